package main

import (
	"context"
	"log/slog"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/opscli/replaybench"
)

// benchReplay is the `replay` suite (infra/opscli/replaybench): a history of
// --max-ops catalog events (default 1,000,000) written into a scratch database's
// event store, then a blue/green rebuild of the catalog through the projection
// manager, timed from the request to the switch (target: 60 s for a million
// events), against COPY of the same rows as the baseline. --duration, --warmup and
// --concurrency do not apply: a rebuild is one run, as long as it takes.
func benchReplay(ctx context.Context, e env, cfg config.Config, log *slog.Logger, o benchOptions) ([]bench.Result, error) {
	_, pool, done, err := benchDatabase(ctx, log, cfg, o, 8)
	if err != nil {
		return nil, err
	}
	defer done()
	events := int(min(o.MaxOps, 100_000_000))
	return replaybench.Run(ctx, pool, replaybench.Options{Events: events, Progress: e.stderr})
}
