package main

import (
	"context"
	"log/slog"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/config"
)

// projectEvents is the project suite's default history: large enough for a steady
// consumption rate, small enough for a few minutes on a laptop.
const projectEvents = 200_000

// benchProject is the `project` suite (infra/bench.Project): catalog events per
// second consumed from content.events (a kfake broker in this process) into the
// read models, against COPY of the same rows as the baseline, and the freshness of
// the embedded mode (command accepted → catalog read model includes it) at a steady
// command rate for --duration after --warmup. It works in a scratch migrated
// database; --max-ops below 200,000 shrinks the generated history (a quick run).
// --concurrency does not apply: the runtime's own parallelism is what is measured.
func benchProject(ctx context.Context, e env, cfg config.Config, log *slog.Logger, o benchOptions) ([]bench.Result, error) {
	scratchURL, pool, done, err := benchDatabase(ctx, log, cfg, o, 16)
	if err != nil {
		return nil, err
	}
	defer done()
	pool.Close() // Project opens its own pool
	return bench.Project(ctx, bench.ProjectConfig{
		DatabaseURL: scratchURL,
		Events:      int(min(o.MaxOps, projectEvents)),
		Duration:    o.Duration,
		Warmup:      o.Warmup,
		Progress:    e.stderr,
		Logger:      log,
	})
}
