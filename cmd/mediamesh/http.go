package main

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/infra/config"
	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
)

// idempotencySweepEvery is how often expired Idempotency-Key records are deleted.
const idempotencySweepEvery = 10 * time.Minute

// newHTTP wires the api for role on d's adapters: "command" serves the command API
// (asset uploads included), the editorial reads and the operations endpoints; "all"
// also serves /media/, runs the thumbnail processor (newAssets), and runs the
// projection runtime in this process when the bus is PostgreSQL (it reads the event
// store's global log directly, whichever store that is), which the editorial list
// (GET /v1/cms/programs) is read from.
func newHTTP(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger, role string) (*fiber.App, error) {
	key, err := signingKey(cfg)
	if err != nil {
		return nil, err
	}
	auth, err := newAuth(ctx, cfg, d, log, key)
	if err != nil {
		return nil, err
	}
	commands, editorial := api.FromHandlers(app.NewHandlers(d.store))
	idem := pginfra.NewIdempotencyStore(d.pool)
	d.sweep(ctx, log, "idempotency sweeper", idempotencySweepEvery, idem.DeleteExpired)
	programs, err := newCMSPrograms(ctx, d, log)
	if err != nil {
		return nil, err
	}
	assets, err := newAssets(ctx, cfg, d, log, role)
	if err != nil {
		return nil, err
	}
	ing, err := newIngestService(cfg, d, log) // POST /v1/ingest (ingest.go)
	if err != nil {
		return nil, err
	}
	readiness := []api.ReadinessCheck{{Name: "postgres", Check: d.pool.Ping}}
	if assets.readiness.Name != "" {
		readiness = append(readiness, assets.readiness)
	}
	ops, err := newOps(ctx, cfg, d, log, role) // runs the projection manager under --role all
	if err != nil {
		return nil, err
	}
	readiness = append(readiness, ops.readiness...)
	var discovery api.Discovery
	if runs(role, "query") { // all: the discovery API (query.go)
		if discovery, err = newDiscovery(ctx, cfg, d, log); err != nil {
			return nil, err
		}
	}
	return api.New(api.Config{
		CommandBodyLimit:  int(cfg.CommandBodyLimit),
		BodyLimit:         int(max(cfg.CommandBodyLimit, cfg.AssetBodyLimit)),
		ConsistencyWait:   cfg.ConsistencyWait,
		ConsistencySecret: consistencySecret(key),
		RateLimits:        rateLimits(cfg),
		TrustedProxies:    cfg.TrustedProxies,
	}, api.Deps{
		Commands:    commands,
		Editorial:   editorial,
		Programs:    programs,
		Discovery:   discovery,
		Tokens:      auth.verifier,
		Keys:        auth.verifier,
		Auth:        api.FromAccounts(auth.accounts),
		RateLimiter: auth.limiter,
		Idempotency: idem,
		Assets:      assets.routes,
		Ingest:      ing,
		Admin:       ops.manager,
		Metrics:     ops.metrics,
		Tracer:      ops.tracer,
		Readiness:   readiness,
		Logger:      log,
	}), nil
}

// consistencySecret derives the consistency tokens' MAC key from the signing key:
// every instance of a deployment already shares that key, so no second secret has to
// be distributed, and the derivation's label keeps the two uses apart.
func consistencySecret(key ed25519.PrivateKey) []byte {
	m := hmac.New(sha256.New, key.Seed())
	m.Write([]byte("mediamesh consistency token v1"))
	return m.Sum(nil)
}

// sweepBatch is how many expired rows one sweep statement deletes; a sweep repeats
// it until fewer come back, so a backlog goes in short transactions.
const sweepBatch = 1000

// sweep runs deleteExpired every interval until the deps are closed: the
// housekeeping of expiring rows (Idempotency-Key records, refresh token families).
// Each instance sweeps; the deletes are idempotent, so several never conflict.
func (d *deps) sweep(ctx context.Context, log *slog.Logger, name string, every time.Duration, deleteExpired func(ctx context.Context, limit int) (int64, error)) {
	d.background(ctx, log, name, func(ctx context.Context) error {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			for {
				n, err := deleteExpired(ctx, sweepBatch)
				if err != nil {
					if ctx.Err() == nil {
						log.Warn(name+": delete expired rows", "error", err.Error())
					}
					break
				}
				if n < sweepBatch {
					break
				}
			}
		}
	})
}
