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
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
)

// idempotencySweepEvery is how often expired Idempotency-Key records are deleted.
const idempotencySweepEvery = 10 * time.Minute

// newHTTP wires the api for role on d's adapters: "command" serves the command API,
// the editorial reads and the operations endpoints; "all" also runs the projection
// runtime in this process when the bus is PostgreSQL (it reads the event store's
// global log directly, whichever store that is), which the editorial list
// (GET /v1/cms/programs) is read from.
func newHTTP(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger, role string) (*fiber.App, error) {
	key, err := signingKey(cfg)
	if err != nil {
		return nil, err
	}
	verifier, err := jwtkeys.NewVerifier(cfg.JWTIssuer, cfg.JWTAudience, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})
	if err != nil {
		return nil, err
	}
	commands, editorial := api.FromHandlers(app.NewHandlers(d.store))
	idem := pginfra.NewIdempotencyStore(d.pool)
	sweepIdempotency(ctx, d, idem, log)
	programs, err := newCMSPrograms(ctx, d, log)
	if err != nil {
		return nil, err
	}
	if role == "all" {
		if cfg.Bus != config.BusPostgres {
			log.Warn("projections are not run: the Kafka bus's relay and consumers are not in this build yet", "bus", string(cfg.Bus))
		} else if err := startProjections(ctx, d, log); err != nil {
			return nil, err
		}
	}
	return api.New(api.Config{
		CommandBodyLimit:  int(cfg.CommandBodyLimit),
		BodyLimit:         int(max(cfg.CommandBodyLimit, cfg.AssetBodyLimit)),
		ConsistencyWait:   cfg.ConsistencyWait,
		ConsistencySecret: consistencySecret(key),
	}, api.Deps{
		Commands:    commands,
		Editorial:   editorial,
		Programs:    programs,
		Tokens:      verifier,
		Idempotency: idem,
		Readiness: []api.ReadinessCheck{
			{Name: "postgres", Check: d.pool.Ping},
		},
		Logger: log,
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

// sweepIdempotency deletes expired Idempotency-Key records every
// idempotencySweepEvery until the deps are closed.
func sweepIdempotency(ctx context.Context, d *deps, idem *pginfra.IdempotencyStore, log *slog.Logger) {
	d.background(ctx, log, "idempotency sweeper", func(ctx context.Context) error {
		t := time.NewTicker(idempotencySweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			for {
				n, err := idem.DeleteExpired(ctx, 1000)
				if err != nil {
					if ctx.Err() == nil {
						log.Warn("delete expired idempotency records", "error", err.Error())
					}
					break
				}
				if n < 1000 {
					break
				}
			}
		}
	})
}
