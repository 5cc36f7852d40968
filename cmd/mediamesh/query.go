package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	bussql "github.com/mediamesh/mediamesh/infra/bus/sql"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/engagement"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
	qapp "github.com/mediamesh/mediamesh/query/app"
	"github.com/mediamesh/mediamesh/query/cache"
	"github.com/mediamesh/mediamesh/query/cache/redisstore"
)

// queryWarmPrograms is how many of the most-read programs the cache loads at start.
const queryWarmPrograms = 1000

// newDiscovery wires the public discovery API (query role, and all): the read models
// on the read replicas (MEDIAMESH_DATABASE_READ_URLS) through a Router that falls
// back to the primary, the Redis documents and rankings layers behind a circuit
// breaker unless Redis is off, the projection waiter for consistency tokens, the
// plays publisher of the configured bus, and the in-process cache in front of it
// all, whose invalidation loop runs and whose warm-up runs in the background (a
// slow warm-up never delays the listener).
//
// What it serves follows the serving versions of the catalog and search
// projections (servingDiscovery): a rebuild that switches either makes this
// process build the read side of the new versions, warm it, and swap it in.
func newDiscovery(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger) (api.Discovery, error) {
	replicas := make([]*pgxpool.Pool, 0, len(cfg.DatabaseReadURLs))
	for _, u := range cfg.DatabaseReadURLs {
		p, err := readmodel.OpenReplica(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", config.KeyDatabaseReadURLs, err)
		}
		d.closers = append(d.closers, p.Close)
		replicas = append(replicas, p)
	}
	router, err := readmodel.NewRouter(d.pool, replicas, readmodel.RouterOptions{Logger: log})
	if err != nil {
		return nil, err
	}
	pgRanks, err := readmodel.NewRankings(router)
	if err != nil {
		return nil, err
	}
	counters := &cache.Counters{}
	var metrics cache.Metrics = counters
	if d.obs != nil {
		// infra/telemetry already registers mediamesh_cache_requests_total and
		// implements cache.Metrics: registering cache.NewPrometheus too would be a
		// duplicate name.
		metrics = cache.Tee(counters, d.obs.metrics)
	}
	var remote cache.Remote // nil: Redis off
	if d.redis != nil {
		store, err := redisstore.New(d.redis)
		if err != nil {
			return nil, err
		}
		var bo cache.BreakerOptions
		if d.obs != nil { // mediamesh_circuit_breaker_state{name="redis"}
			bo.OnStateChange = func(s cache.BreakerState) { d.obs.metrics.SetBreakerState("redis", int(s)) }
		}
		remote = cache.NewBreaker(store, bo)
	}
	waiter, err := runtime.NewWaiter(d.pool, log)
	if err != nil {
		return nil, err
	}
	d.background(ctx, log, "discovery projection waiter", waiter.Run)
	plays, err := newPlaysPublisher(cfg, d, log)
	if err != nil {
		return nil, err
	}
	build := func(ctx context.Context, v servingVersions) (*cache.Discovery, error) {
		tables, err := catalogTables(v.catalog)
		if err != nil {
			return nil, err
		}
		cat, err := readmodel.NewCatalog(router, tables)
		if err != nil {
			return nil, err
		}
		idx, err := newSearchReadModel(cfg, d, router, v.search)
		if err != nil {
			return nil, err
		}
		keys := discoveryKeys(v)
		docs, err := cache.NewDocuments(remote, keys, cat, metrics, log)
		if err != nil {
			return nil, err
		}
		ranks, err := cache.NewRankings(remote, keys, pgRanks, metrics)
		if err != nil {
			return nil, err
		}
		deps := qapp.DiscoveryDeps{Programs: docs, Episodes: docs, Episode: docs, Browse: cat, Categories: cat,
			Search: idx, Rankings: ranks, Checkpoints: cat, Waiter: waiter}
		if plays != nil { // a nil *Publisher in the interface would not be nil
			deps.Plays = plays
		}
		inner, err := qapp.NewDiscovery(deps, qapp.DiscoveryOptions{CDNBaseURL: cfg.CDNBaseURL, ConsistencyWait: cfg.ConsistencyWait})
		if err != nil {
			return nil, err
		}
		return cache.New(inner, cache.Options{Remote: remote, Keys: keys, Metrics: metrics, Logger: log})
	}
	watcher, err := d.servingWatcher(ctx, log)
	if err != nil {
		return nil, err
	}
	sd, err := newServingDiscovery(ctx, d.pool, watcher, build, log)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, sd.close)
	log.Info("discovery ready", "replicas", len(replicas), "redis", remote != nil, "plays", plays != nil, "search", string(cfg.Search))
	return sd, nil
}

// catalogTables names version v of the catalog projection's tables.
func catalogTables(v int) (readmodel.CatalogTables, error) {
	t := readmodel.CatalogTables{Projection: qapp.ProjectionCatalog}
	for _, f := range []struct {
		dst  *string
		base string
	}{{&t.Programs, readmodel.CatalogProgramsTable}, {&t.Episodes, readmodel.CatalogEpisodesTable}, {&t.Categories, readmodel.CatalogCategoriesTable}} {
		name, err := rebuild.VersionedTable(f.base, v)
		if err != nil {
			return t, err
		}
		*f.dst = name
	}
	return t, nil
}

// discoveryKeys are the Redis keys of the serving versions: the catalog's
// documents under its version's key space (the documents sink of version v
// writes mm:catalog:v<v>:…), and list results under a prefix of their own per
// pair of versions, so that no list cached from an older version is served
// under the new version's generation counters (which start again at zero).
func discoveryKeys(v servingVersions) cache.Keys {
	k := cache.DefaultKeys
	k.Catalog = mmredis.CatalogKeyspace(v.catalog).Base()
	if v != (servingVersions{catalog: catalog.Version, search: search.Version}) {
		k.Lists = fmt.Sprintf("%sc%ds%d:", k.Lists, v.catalog, v.search)
	}
	return k
}

// newSearchReadModel reads version v of the configured search index.
func newSearchReadModel(cfg config.Config, d *deps, router *readmodel.Router, v int) (*readmodel.SearchIndex, error) {
	name := search.IndexName(v)
	if cfg.Search == config.SearchPostgres {
		return readmodel.NewPostgresSearchIndex(router, name, func(db *pgxpool.Pool) (search.Reader, error) {
			return searchpg.New(db)
		})
	}
	w, err := newSearchIndex(cfg, d)
	if err != nil {
		return nil, err
	}
	r, ok := w.(search.Reader)
	if !ok {
		return nil, fmt.Errorf("%s=%s: the index cannot be searched", config.KeySearch, cfg.Search)
	}
	return readmodel.NewSearchIndex(r, name, router)
}

// playsPublisher is the bus publisher POST /v1/plays writes to.
type playsPublisher interface {
	qapp.PlayPublisher
	Close() error
}

// newPlaysPublisher returns the publisher of the configured bus: the PostgreSQL
// bus's tables, or Kafka. It is closed with the deps.
func newPlaysPublisher(cfg config.Config, d *deps, log *slog.Logger) (playsPublisher, error) {
	var (
		pub playsPublisher
		err error
	)
	switch cfg.Bus {
	case config.BusPostgres:
		pub, err = bussql.NewPublisher(d.pool, bussql.Config{Logger: busLogger(log, "plays-publisher")})
	case config.BusKafka:
		pub, err = kafka.NewPublisher(kafkaConfig(cfg), busLogger(log, "plays-publisher"))
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("plays publisher: %w", err)
	}
	d.closers = append(d.closers, func() {
		if err := pub.Close(); err != nil {
			log.Warn("close plays publisher", "error", err.Error())
		}
	})
	return pub, nil
}

// startEngagement runs the engagement projection (projector role, and all): the
// Counter consuming the plays topic of the configured bus in its consumer group,
// and the Refresher recomputing trending and popular into PostgreSQL and, unless
// Redis is off, into Redis's sorted sets.
func startEngagement(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger) error {
	counter, err := engagement.NewCounter(d.pool, engagement.CounterOptions{Logger: log})
	if err != nil {
		return err
	}
	wlog := busLogger(log, "plays-subscriber")
	var sub interface {
		engagement.Subscriber
		Close() error
	}
	switch cfg.Bus {
	case config.BusPostgres:
		sub, err = bussql.NewSubscriber(d.pool, engagement.ConsumerGroup, bussql.Config{Logger: wlog})
	case config.BusKafka:
		sub, err = kafka.NewSubscriber(kafkaConfig(cfg), engagement.ConsumerGroup, wlog)
	default:
		return fmt.Errorf("%s=%s: unknown bus", config.KeyBus, cfg.Bus)
	}
	if err != nil {
		return fmt.Errorf("plays subscriber: %w", err)
	}
	d.closers = append(d.closers, func() {
		if err := sub.Close(); err != nil {
			log.Warn("close plays subscriber", "error", err.Error())
		}
	})
	d.background(ctx, log, "engagement counter", func(ctx context.Context) error { return counter.Run(ctx, sub) })
	var sink engagement.RankingSink
	if d.redis != nil {
		store, err := redisstore.New(d.redis)
		if err != nil {
			return err
		}
		sink = store
	}
	refresher, err := engagement.NewRefresher(d.pool, sink, engagement.RefresherOptions{Logger: log})
	if err != nil {
		return err
	}
	d.background(ctx, log, "engagement refresher", refresher.Run)
	return nil
}

// newQueryHTTP wires the query role: the discovery API and POST /v1/plays, the
// /media/ delivery (newAssets), the JWKS and token verification of the shared
// signing key (consistency tokens are MACed with a key derived from it, so they
// verify here as on the command role), metrics and readiness. It serves no
// command and runs no projection.
func newQueryHTTP(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger) (*fiber.App, error) {
	key, err := signingKey(cfg)
	if err != nil {
		return nil, err
	}
	auth, err := newAuth(ctx, cfg, d, log, key)
	if err != nil {
		return nil, err
	}
	discovery, err := newDiscovery(ctx, cfg, d, log)
	if err != nil {
		return nil, err
	}
	assets, err := newAssets(ctx, cfg, d, log, "query")
	if err != nil {
		return nil, err
	}
	o, err := newOps(ctx, cfg, d, log, "query")
	if err != nil {
		return nil, err
	}
	readiness := []api.ReadinessCheck{{Name: "postgres", Check: d.pool.Ping}}
	readiness = append(readiness, o.readiness...)
	if assets.readiness.Name != "" {
		readiness = append(readiness, assets.readiness)
	}
	return api.New(api.Config{
		ConsistencyWait:   cfg.ConsistencyWait,
		ConsistencySecret: consistencySecret(key),
		RateLimits:        rateLimits(cfg),
		TrustedProxies:    cfg.TrustedProxies,
	}, api.Deps{
		Discovery:   discovery,
		Tokens:      auth.verifier,
		Keys:        auth.verifier,
		RateLimiter: auth.limiter,
		Assets:      assets.routes,
		Metrics:     o.metrics,
		Tracer:      o.tracer,
		Readiness:   readiness,
		Logger:      log,
	}), nil
}
