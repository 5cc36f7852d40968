package main

import (
	"context"
	"log/slog"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/config"
)

// ingestBenchItems is the ingest suite's default feed: the 100,000 programs.
const ingestBenchItems = 100_000

// benchIngest is the `ingest` suite (infra/bench.Ingest): items per second from a
// feed submitted through the ingest service (as POST /v1/ingest does) to every item
// visible in the PostgreSQL read models (catalog and editorial; search runs beside),
// with the embedded bus, an ingest worker and the projection runtime in this
// process, configured as `serve` configures them.
// It works in a scratch migrated database; --max-ops below 100,000 shrinks the
// feed (a quick run). --duration, --warmup and --concurrency do not apply: the feed
// is one run, as long as it takes.
func benchIngest(ctx context.Context, e env, cfg config.Config, log *slog.Logger, o benchOptions) ([]bench.Result, error) {
	scratchURL, pool, done, err := benchDatabase(ctx, log, cfg, o, ingestPoolConns)
	if err != nil {
		return nil, err
	}
	defer done()
	pool.Close() // Ingest opens its own pool
	return bench.Ingest(ctx, bench.IngestConfig{
		DatabaseURL: scratchURL,
		Items:       int(min(o.MaxOps, ingestBenchItems)),
		// The bus's own info lines (a schema check per partition, a stop per
		// subscription) would drown the progress lines: warnings only.
		Bus:         ingestBusConfig(newLogger(e.stderr, max(cfg.LogLevel, slog.LevelWarn)), "bench-ingest"),
		Concurrency: ingestConcurrency,
		Progress:    e.stderr,
		Logger:      log,
	})
}
