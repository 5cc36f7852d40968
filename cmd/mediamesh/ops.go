package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/opscli"
	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	"github.com/mediamesh/mediamesh/infra/telemetry"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/documents"
	"github.com/mediamesh/mediamesh/projections/editorial"
	"github.com/mediamesh/mediamesh/projections/engagement"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
	"github.com/mediamesh/mediamesh/projections/thumbnails"
)

// ops is what newOps wired for a role: the projection manager (the admin
// endpoints' and the CLI's ProjectionAdmin), and the observability the api serves.
type ops struct {
	manager   *rebuild.Manager
	metrics   *telemetry.Metrics
	tracer    trace.TracerProvider
	readiness []api.ReadinessCheck
}

// newOps builds the projection manager of every defined projection and registers
// its metrics. Roles that run projections (all, projector) also run the manager in
// the background: one runtime per active version of every projection, rebuilds
// driven blue/green, replaced versions retired. The command role only answers
// status and records rebuilds, which a running projector picks up.
//
// Under MEDIAMESH_BUS=postgres the live versions read the event store's global log
// directly; under MEDIAMESH_BUS=kafka they consume content.events, one consumer
// group per version (projectionStream, kafka.go), and the topics are created first
// if missing. Rebuilds replay the event store in both modes.
func newOps(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger, role string) (*ops, error) {
	if d.obs == nil {
		return nil, errors.New("ops: observability not built (startServerWith builds it)")
	}
	m, idx, err := newProjectionManager(cfg, d, log)
	if err != nil {
		return nil, err
	}
	if err := d.obs.metrics.RegisterProjections(m.Status); err != nil {
		return nil, err
	}
	o := &ops{
		manager: m,
		metrics: d.obs.metrics,
		tracer:  d.obs.tracing.Provider,
	}
	es := telemetry.EventStoreCheck(d.store)
	o.readiness = append(o.readiness, api.ReadinessCheck{Name: "eventstore", Check: es.Check})
	if !runs(role, "projector") {
		return o, nil
	}
	if cfg.Bus == config.BusKafka {
		if err := ensureTopics(ctx, cfg); err != nil {
			return nil, err
		}
		kc, err := kafkaReadiness(cfg, d, kafka.TopicContentEvents) // kafka.go
		if err != nil {
			return nil, err
		}
		o.readiness = append(o.readiness, kc...)
	}
	if err := ensureServingSearchIndex(ctx, d.pool, idx); err != nil {
		return nil, fmt.Errorf("%s=%s: %w", config.KeySearch, cfg.Search, err)
	}
	d.background(ctx, log, "projection manager", m.Run)
	err = registerKafkaLag(cfg, d, func(ctx context.Context) ([]string, error) { // ingest.go
		st, err := m.Status(ctx)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range st {
			if s.Rebuildable { // the catalog projections consume content.events
				names = append(names, fmt.Sprintf("%s.v%d", s.Name, s.Version))
			}
		}
		return names, nil
	})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(m.Definitions()))
	for _, def := range m.Definitions() {
		names = append(names, def.Name)
	}
	log.Info("projection manager running", "projections", names, "search", string(cfg.Search), "redis_documents", d.redis != nil, "bus", string(cfg.Bus))
	return o, nil
}

// newProjectionManager defines MediaMesh's projections for the rebuild manager:
//
//   - editorial, catalog and search are catalog projections, rebuilt blue/green
//     from the event store. With Redis on, the catalog also writes its Redis
//     documents through an outbox, and their key space (mm:catalog:v<n>:) is one
//     more sink of each version: the manager runs each version's flusher.
//   - thumbnails is a side-effecting processor (never re-run by a rebuild), listed
//     with its position and lag; it runs in newAssets, not in the manager.
//   - engagement is a telemetry aggregate (plays never enter the event store),
//     listed as engagementStatus reads it and never rebuilt.
//
// Progress and lag are exact event counts on the PostgreSQL event store (an
// index-only count); on EventStoreDB they are estimates. Every version the
// manager runs is instrumented: batches traced and counted, and the freshness of
// live events recorded per sink (not while a rebuild replays old events).
func newProjectionManager(cfg config.Config, d *deps, log *slog.Logger) (*rebuild.Manager, searchIndex, error) {
	var defs []rebuild.Definition
	ed, err := rebuild.Rebuildable(d.pool, editorial.New(nil), nil)
	if err != nil {
		return nil, nil, err
	}
	defs = append(defs, ed)
	cat, err := catalogDefinition(d, log)
	if err != nil {
		return nil, nil, err
	}
	defs = append(defs, cat)
	idx, err := newSearchIndex(cfg, d)
	if err != nil {
		return nil, nil, err
	}
	sd, err := rebuild.Search(d.pool, idx, idx, nil)
	if err != nil {
		return nil, nil, err
	}
	defs = append(defs, sd,
		rebuild.Processor(d.pool, thumbnails.DefaultName),
		rebuild.Telemetry(engagement.Name, engagementStatus(d.pool)),
	)
	stream, err := projectionStream(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	opts := rebuild.Options{Runtime: runtime.Options{Logger: log, Stream: stream}, Logger: log}
	if d.obs != nil { // the CLI's manager records nothing
		opts.Wrap = func(p runtime.Projection, replay bool) runtime.Projection {
			return telemetry.InstrumentProjection(p, d.obs.metrics, telemetry.ProjectionOptions{
				Tracer: d.obs.tracer(), Freshness: !replay,
			})
		}
	}
	if cfg.EventStore == config.EventStorePostgres {
		c, err := opscli.NewEventCounter(d.pool)
		if err != nil {
			return nil, nil, err
		}
		opts.Counter = c
	}
	m, err := rebuild.New(d.pool, d.store, defs, opts)
	if err != nil {
		return nil, nil, err
	}
	return m, idx, nil
}

// catalogDefinition is the catalog projection's Definition: with Redis, the
// projection records its changes in its documents outbox (an extra table of each
// version) and the documents' key space is a sink of its own, whose flusher
// records the documents' freshness; without Redis, only its tables.
func catalogDefinition(d *deps, log *slog.Logger) (rebuild.Definition, error) {
	if d.redis == nil {
		return rebuild.Rebuildable(d.pool, catalog.New(nil), nil)
	}
	opts := documents.Options{Logger: log}
	if d.obs != nil { // mediamesh_freshness_seconds{sink="redis"}, while a version serves
		opts.Freshness = func(at time.Time) { d.obs.metrics.ObserveFreshness("redis", at) }
	}
	docs, err := opscli.NewDocumentsSink(d.pool, d.redis, nil, mmredis.DefaultGuardTTL, opts)
	if err != nil {
		return rebuild.Definition{}, err
	}
	return rebuild.Rebuildable(d.pool, catalog.New(nil, catalog.WithDocuments()), []string{catalog.OutboxTable}, docs)
}

// ensureServingSearchIndex creates the serving search version's index when it does
// not exist yet (a fresh deployment: version 1, before its first event), so that
// searches find an empty index rather than an error. A rebuild creates its new
// version's index itself (rebuild.Search).
func ensureServingSearchIndex(ctx context.Context, pool *pgxpool.Pool, idx searchIndex) error {
	v, err := rebuild.ServingVersion(ctx, pool, search.Name)
	if errors.Is(err, rebuild.ErrNotServing) {
		v, err = search.Version, nil
	}
	if err != nil {
		return err
	}
	return idx.EnsureIndex(ctx, search.IndexName(v))
}

// engagementStatus reports the engagement aggregate (projections/engagement) for
// the status list. It does not consume the event store, so it has no position or
// event lag: its status is "running" once its rankings have been computed
// ("starting" before), and lag_seconds is the age of the newest refresh, which is
// how stale the trending and popular lists are.
func engagementStatus(pool *pgxpool.Pool) func(ctx context.Context) ([]rebuild.Status, error) {
	return func(ctx context.Context) ([]rebuild.Status, error) {
		var last *time.Time
		err := pool.QueryRow(ctx, `SELECT max(refreshed_at) FROM engagement_rankings_v1`).Scan(&last)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("engagement status: %w", err)
		}
		st := rebuild.Status{Name: engagement.Name, Version: 1, Status: rebuild.StatusStarting}
		if last != nil {
			st.Status = rebuild.StatusRunning
			st.LagSeconds = max(0, time.Since(*last).Seconds())
		}
		return []rebuild.Status{st}, nil
	}
}

// newProjectorHTTP wires `serve --role projector`: the projection manager and the
// thumbnail processor run in the background, and the HTTP server answers only
// /health/live, /health/ready (PostgreSQL, the event store, the blob store) and
// /metrics (projection lag, freshness, pools), for the orchestrator and the
// scraper. The ops endpoints are served by the command role; the CLI works from
// any host that reaches the database.
func newProjectorHTTP(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger) (*fiber.App, error) {
	assets, err := newAssets(ctx, cfg, d, log, "projector")
	if err != nil {
		return nil, err
	}
	o, err := newOps(ctx, cfg, d, log, "projector")
	if err != nil {
		return nil, err
	}
	readiness := []api.ReadinessCheck{{Name: "postgres", Check: d.pool.Ping}}
	readiness = append(readiness, o.readiness...)
	if assets.readiness.Name != "" {
		readiness = append(readiness, assets.readiness)
	}
	return api.New(api.Config{RateLimits: rateLimits(cfg), TrustedProxies: cfg.TrustedProxies}, api.Deps{
		Metrics:   o.metrics,
		Tracer:    o.tracer,
		Readiness: readiness,
		Logger:    log,
	}), nil
}
