package main

import (
	"context"
	"log/slog"
	"runtime"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/imaging"
)

// benchAssets is the `assets` suite (infra/imaging.BenchThumbnails): thumbnails
// rendered per second from a 2,000 × 3,000 JPEG, as the thumbnail processor renders
// them. It needs no database. Unless --concurrency is given it runs one worker per
// CPU rather than the suites' 16: each render decodes a 6-megapixel image, and 16 at
// once on a small machine measure memory pressure and queueing on the decoder's
// semaphore, not throughput.
func benchAssets(ctx context.Context, e env, _ config.Config, _ *slog.Logger, o benchOptions) ([]bench.Result, error) {
	res, err := imaging.BenchThumbnails(ctx, assetsLoad(e, o), imaging.RenderOptions{})
	if err != nil {
		return nil, err
	}
	return []bench.Result{res}, nil
}

// assetsLoad is the assets suite's load: the shared flags, with one worker per CPU
// unless --concurrency was given.
func assetsLoad(e env, o benchOptions) bench.Load {
	concurrency := o.Concurrency
	if !o.ConcurrencySet {
		concurrency = runtime.NumCPU()
	}
	return bench.Load{
		Concurrency: concurrency,
		Warmup:      o.Warmup,
		Duration:    o.Duration,
		MaxOps:      o.MaxOps,
		Progress:    e.stderr,
		Label:       "thumbnails",
	}
}
