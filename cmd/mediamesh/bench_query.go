package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/ratelimit"
)

// benchQuery is the `query` suite (infra/bench.Query): the discovery API under the
// issue's request mix with the caches on, cached and uncached reads by id, and
// uncached searches, each against the real HTTP app (api.New) on 127.0.0.1, in a
// scratch migrated database and a namespace of the configured Redis (required: the
// cached results measure it). --max-ops caps each result's operations; the
// catalog is the 100,000 programs and 1,000,000 episodes.
func benchQuery(ctx context.Context, e env, cfg config.Config, log *slog.Logger, o benchOptions) ([]bench.Result, error) {
	rdb, err := newRedisClient(cfg.Redis)
	if err != nil {
		return nil, err
	}
	if rdb == nil {
		return nil, fmt.Errorf("bench query: %s=off: the suite measures the Redis layers; set it to a Redis", config.KeyRedisURL)
	}
	defer func() { _ = rdb.Close() }()
	scratchURL, pool, done, err := benchDatabase(ctx, log, cfg, o, o.Concurrency+8)
	if err != nil {
		return nil, err
	}
	defer done()
	pool.Close() // Query opens its own pool
	return bench.Query(ctx, bench.QueryConfig{
		DatabaseURL: scratchURL,
		Redis:       rdb,
		Serve:       serveQueryBench(log),
		Load: bench.Load{
			Concurrency: o.Concurrency,
			Warmup:      o.Warmup,
			Duration:    o.Duration,
			MaxOps:      o.MaxOps,
			Progress:    e.stderr,
		},
		Logger: log,
	})
}

// serveQueryBench starts the real api over a discovery service on 127.0.0.1, as
// the query role serves it, except that the public rate limit is out of reach (the
// load generator is one client) and nothing is logged per request.
func serveQueryBench(log *slog.Logger) func(ctx context.Context, svc bench.QueryService) (string, func(), error) {
	return func(ctx context.Context, svc bench.QueryService) (string, func(), error) {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		lim, err := ratelimit.New(nil, ratelimit.Options{Logger: log})
		if err != nil {
			return "", nil, err
		}
		unlimited := ratelimit.PerMinute(math.MaxInt32, math.MaxInt32)
		app := api.New(api.Config{
			ConsistencySecret: secret,
			RateLimits:        api.RateLimits{Auth: unlimited, Plays: unlimited, Public: unlimited},
		}, api.Deps{Discovery: svc, RateLimiter: lim, Logger: slog.New(slog.DiscardHandler)})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			lim.Close()
			return "", nil, fmt.Errorf("bench query: listen: %w", err)
		}
		done := make(chan error, 1)
		go func() { done <- app.Listener(ln) }()
		stop := func() {
			if err := app.Shutdown(); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Warn("bench query: shutdown", "error", err.Error())
			}
			<-done
			lim.Close()
		}
		return "http://" + ln.Addr().String(), stop, nil
	}
}
