package main

import (
	"context"
	"log/slog"

	"github.com/mediamesh/mediamesh/command/accounts"
	"github.com/mediamesh/mediamesh/infra/authbench"
	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/config"
	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
)

// benchAuth is the `auth` suite (infra/authbench): token verification with and
// without the verified-token cache, and login at the configured bcrypt cost on a
// scratch database.
func benchAuth(ctx context.Context, e env, cfg config.Config, log *slog.Logger, o benchOptions) ([]bench.Result, error) {
	_, pool, done, err := benchDatabase(ctx, log, cfg, o, o.Concurrency+4)
	if err != nil {
		return nil, err
	}
	defer done()
	return authbench.Run(ctx, authbench.Options{
		Concurrency: o.Concurrency,
		Warmup:      o.Warmup,
		Duration:    o.Duration,
		Progress:    e.stderr,
		Accounts:    accounts.Config{BcryptCost: cfg.BcryptCost},
	}, pginfra.NewAccountStore(pool))
}
