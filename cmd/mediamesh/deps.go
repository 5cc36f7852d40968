package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/eventstore/esdb"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// eventStore is what this process needs of the event store: the write side's port
// and the global log the embedded projection runtime reads. Both adapters
// (infra/eventstore/postgres and infra/eventstore/esdb) implement it.
type eventStore interface {
	app.EventStore
	runtime.Source
}

// deps are the adapters a process opened, closed in reverse order by close.
type deps struct {
	pool  *pgxpool.Pool
	store eventStore
	// redis is the shared Redis client; nil when MEDIAMESH_REDIS_URL=off.
	redis goredis.UniversalClient
	// obs are the process's metrics and tracing (set by startServerWith, which also
	// wraps store with them); nil for subcommands that serve nothing.
	obs *observability
	// watcher follows the projections' serving versions (servingWatcher).
	watcher *rebuild.Watcher
	closers []func()
}

func (d *deps) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}

// embedded reports whether cfg is the embedded mode: PostgreSQL is both the event
// store and the bus, so this process owns the schema and migrates it on start. In
// other deployments migrations are an explicit step (`mediamesh migrate up`, run
// once per release), and a role refuses to start on an outdated schema.
func embedded(cfg config.Config) bool {
	return cfg.EventStore == config.EventStorePostgres && cfg.Bus == config.BusPostgres
}

// openPrimary connects to the primary database (creating it when missing) and
// migrates or checks its schema: all that the subcommands that only touch tables
// (users) need.
func openPrimary(ctx context.Context, cfg config.Config, log *slog.Logger) (*deps, error) {
	d := &deps{}
	pool, err := pginfra.Connect(ctx, cfg.DatabaseURL, true)
	if err != nil {
		return nil, fmt.Errorf("primary database: %w", err)
	}
	d.pool = pool
	d.closers = append(d.closers, pool.Close)
	if embedded(cfg) {
		if err := pginfra.Migrate(ctx, pool); err != nil {
			d.close()
			return nil, err
		}
		log.Info("migrations applied")
	} else if err := checkSchema(ctx, pool); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// openDeps opens the primary database (openPrimary), the configured event store,
// and the Redis client (which connects on first use: a Redis that is down at start
// is no error, its users fall back or fail per request).
func openDeps(ctx context.Context, cfg config.Config, log *slog.Logger) (*deps, error) {
	d, err := openPrimary(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	rdb, err := newRedisClient(cfg.Redis)
	if err != nil {
		d.close()
		return nil, err
	}
	if rdb != nil {
		d.redis = rdb
		d.closers = append(d.closers, func() {
			if err := rdb.Close(); err != nil {
				log.Warn("close redis client", "error", err.Error())
			}
		})
	}
	switch cfg.EventStore {
	case config.EventStorePostgres:
		d.store = pgstore.New(d.pool)
	case config.EventStoreESDB:
		s, err := esdb.Dial(cfg.ESDBURL)
		if err != nil {
			d.close()
			return nil, fmt.Errorf("event store: %w", err)
		}
		d.store = s
		d.closers = append(d.closers, func() {
			if err := s.Close(); err != nil {
				log.Warn("close eventstoredb client", "error", err.Error())
			}
		})
	default:
		d.close()
		return nil, fmt.Errorf("%s=%s: unknown event store", config.KeyEventStore, cfg.EventStore)
	}
	return d, nil
}

// errSchemaOutdated: migrations are pending outside the embedded mode.
var errSchemaOutdated = errors.New("database schema is not up to date: run `mediamesh migrate up`")

func checkSchema(ctx context.Context, pool *pgxpool.Pool) error {
	st, err := pginfra.MigrationsStatus(ctx, pool)
	if err != nil {
		return err
	}
	for _, m := range st {
		if !m.Applied {
			return fmt.Errorf("%w (version %d is pending)", errSchemaOutdated, m.Version)
		}
	}
	return nil
}

// newRedisClient returns the client of MEDIAMESH_REDIS_URL (infra/redis.FromConfig),
// or nil for off: one server for a URL (its database, user, password and TLS
// included), a cluster client for node addresses. It does no I/O.
func newRedisClient(c config.Redis) (goredis.UniversalClient, error) {
	rdb, err := mmredis.FromConfig(c)
	if errors.Is(err, mmredis.ErrDisabled) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.KeyRedisURL, err)
	}
	return rdb, nil
}

// busLogger is the Watermill logger of a bus component: its info lines (a schema
// check per partition and subscription, each start and stop) are logged at debug
// level, where they do not drown a role's own lines or a command's progress bar;
// its warnings and errors stay as they are.
func busLogger(log *slog.Logger, component string) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(log.With("component", component),
		map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
}
