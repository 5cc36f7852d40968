package main

import (
	"context"
	"fmt"
	"os"

	"github.com/mediamesh/mediamesh/command/ingest"
)

// demoSeed is the random seed of the demo catalog: fixed, so every run writes
// the same programs.
const demoSeed = 1

// runSeed loads N demo programs (published, with published episodes) through the
// ingest path, exactly as `mediamesh ingest` would: ingest.DemoFeed writes them to
// a temporary NDJSON file, which is submitted with a worker in this process. The
// demo feed is deterministic and its items are upserts by external id, so seeding
// twice appends nothing new and `make run` can seed on every start. Then every demo
// program gets a generated poster through the upload use case (seed_artwork.go;
// --artwork=false skips it), equally idempotent.
func runSeed(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "seed", "[--programs N] [--artwork=false]")
	n := fs.Int("programs", 20, "number of demo programs (1–100000)")
	artwork := fs.Bool("artwork", true, "upload a generated poster for every demo program")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > 100000 || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	cfg, log, err := setup(e)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "mediamesh-seed-*.ndjson")
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer os.Remove(f.Name())
	err = ingest.DemoFeed(f, *n, demoSeed)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("seed: write demo feed: %w", err)
	}
	job, err := ingestFile(ctx, e, cfg, log, f.Name(), true)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if job.Status != ingest.StatusCompleted {
		return fmt.Errorf("seed: ingest job %s %s: %d of %d items failed", job.ID, job.Status, job.Failed, job.Total)
	}
	log.Info("seeded demo catalog", "programs", *n, "job", job.ID)
	if *artwork {
		if _, err := seedArtwork(ctx, cfg, log, *n); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}
