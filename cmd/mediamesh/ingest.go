package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/ingest"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	bussql "github.com/mediamesh/mediamesh/infra/bus/sql"
	"github.com/mediamesh/mediamesh/infra/config"
	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/telemetry"
)

// ingestPartitions is how many tables the PostgreSQL bus spreads ingest.events
// over. Publisher and subscribers must agree on it, so it is a constant of the
// build rather than a setting: items of one external id stay in order on one
// partition, and the partitions bound the items applied at once.
const ingestPartitions = 8

// ingestConcurrency bounds the messages (of up to 100 items each) one worker
// applies at once: two per partition, so a partition whose message waits on a
// commit does not idle the worker.
const ingestConcurrency = 2 * ingestPartitions

// ingestPoolConns is the primary pool's default size in processes that run an
// ingest worker: one connection per partition (each holds one while it
// delivers), one per item in flight, and headroom for job bookkeeping, pruning and
// the rest of the process. pgxpool's own default (max(4, CPUs)) would starve the
// subscriber. An explicit pool_max_conns in the database URL is kept.
const ingestPoolConns = ingestPartitions + ingestConcurrency + 8

// ingestPruneEvery and ingestRetention: consumed ingest messages (as large as the
// feeds) are deleted from the PostgreSQL bus after a day, checked every 10 minutes.
const (
	ingestPruneEvery = 10 * time.Minute
	ingestRetention  = 24 * time.Hour
)

// errIngestBus: the configured bus has no ingest adapter.
var errIngestBus = errors.New("unknown bus for ingest")

// ingestBusConfig is the PostgreSQL bus configuration of ingest.events. A message
// carries up to 100 items, so a subscription reads one message per transaction:
// that transaction holds back the event store's global log (and the bus's other
// partitions) while its messages are applied, one message's time rather than 25's
// (seconds, which stalled the projections behind a large feed).
func ingestBusConfig(log *slog.Logger, component string) bussql.Config {
	return bussql.Config{Partitions: ingestPartitions, BatchSize: 1, Logger: busLogger(log, component)}
}

// withPoolConns returns dbURL with pool_max_conns=n when it names no
// pool_max_conns of its own and pgxpool's default is smaller; otherwise dbURL
// unchanged. Both the URL form and the keyword/value form are handled.
func withPoolConns(dbURL string, n int) string {
	pc, err := pgxpool.ParseConfig(dbURL)
	if err != nil || int(pc.MaxConns) >= n || strings.Contains(dbURL, "pool_max_conns") {
		return dbURL // a bad URL fails in Connect, with its own message
	}
	if strings.HasPrefix(dbURL, "postgres://") || strings.HasPrefix(dbURL, "postgresql://") {
		u, err := url.Parse(dbURL)
		if err != nil {
			return dbURL
		}
		q := u.Query()
		q.Set("pool_max_conns", strconv.Itoa(n))
		u.RawQuery = q.Encode()
		return u.String()
	}
	return strings.TrimSpace(dbURL) + " pool_max_conns=" + strconv.Itoa(n)
}

// newIngestPublisher returns the publisher of ingest.events on the configured
// bus, closed with the deps.
func newIngestPublisher(cfg config.Config, d *deps, log *slog.Logger) (message.Publisher, error) {
	var (
		pub message.Publisher
		err error
	)
	switch cfg.Bus {
	case config.BusPostgres:
		pub, err = bussql.NewPublisher(d.pool, ingestBusConfig(log, "ingest-publisher"))
	case config.BusKafka:
		pub, err = kafka.NewPublisher(kafkaConfig(cfg), busLogger(log, "ingest-publisher"))
	default:
		return nil, fmt.Errorf("%s=%s: %w", config.KeyBus, cfg.Bus, errIngestBus)
	}
	if err != nil {
		return nil, fmt.Errorf("ingest publisher: %w", err)
	}
	d.closers = append(d.closers, func() {
		if err := pub.Close(); err != nil {
			log.Warn("close ingest publisher", "error", err.Error())
		}
	})
	return pub, nil
}

// newIngestService is what POST /v1/ingest and `mediamesh ingest` submit through:
// jobs in PostgreSQL, items on ingest.events of the configured bus.
func newIngestService(cfg config.Config, d *deps, log *slog.Logger) (*ingest.Service, error) {
	pub, err := newIngestPublisher(cfg, d, log)
	if err != nil {
		return nil, err
	}
	return ingest.NewService(pginfra.NewIngestJobs(d.pool), pub, ingest.Config{
		MaxFeedBytes: cfg.IngestMaxBytes,
		Logger:       log.With("component", "ingest"),
	})
}

// startIngestWorker runs an ingest worker in the background until the deps are
// closed (`serve --role ingest`, all, and `mediamesh ingest` without
// --no-worker): it consumes ingest.events in ingest.ConsumerGroup and applies each
// message's items to the event store (d.store, instrumented in a server: the
// wrapper forwards the PostgreSQL adapter's AppendMany, which makes a round of
// items one transaction). Under the PostgreSQL bus it also prunes consumed
// messages. It returns the event store's readiness check.
func startIngestWorker(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger) ([]api.ReadinessCheck, error) {
	var (
		sub         message.Subscriber
		err         error
		concurrency = ingestConcurrency
	)
	switch cfg.Bus {
	case config.BusPostgres:
		busCfg := ingestBusConfig(log, "ingest-subscriber")
		sub, err = bussql.NewSubscriber(d.pool, ingest.ConsumerGroup, busCfg)
		if err == nil {
			d.background(ctx, log, "ingest pruner", func(ctx context.Context) error {
				t := time.NewTicker(ingestPruneEvery)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return nil
					case <-t.C:
					}
					if _, err := bussql.Prune(ctx, d.pool, ingest.Topic, busCfg, ingestRetention); err != nil && ctx.Err() == nil {
						log.Warn("ingest pruner: prune consumed messages", "error", err.Error())
					}
				}
			})
		}
	case config.BusKafka:
		if err := ensureTopics(ctx, cfg); err != nil {
			return nil, err
		}
		for _, t := range kafka.Topics() {
			if t.Name == kafka.TopicIngestEvents {
				concurrency = 2 * int(t.Partitions)
			}
		}
		sub, err = kafka.NewSubscriber(kafkaConfig(cfg), ingest.ConsumerGroup, busLogger(log, "ingest-subscriber"))
	default:
		return nil, fmt.Errorf("%s=%s: %w", config.KeyBus, cfg.Bus, errIngestBus)
	}
	if err != nil {
		return nil, fmt.Errorf("ingest subscriber: %w", err)
	}
	d.closers = append(d.closers, func() {
		if err := sub.Close(); err != nil {
			log.Warn("close ingest subscriber", "error", err.Error())
		}
	})
	w, err := ingest.NewWorker(pginfra.NewIngestJobs(d.pool), sub, d.store, ingest.Config{
		Concurrency: concurrency,
		Logger:      log.With("component", "ingest-worker"),
	})
	if err != nil {
		return nil, err
	}
	d.background(ctx, log, "ingest worker", w.Run)
	log.Info("ingest worker running", "topic", ingest.Topic, "group", ingest.ConsumerGroup, "bus", string(cfg.Bus), "concurrency", concurrency)
	kc, err := kafkaReadiness(cfg, d, kafka.TopicIngestEvents) // kafka.go
	if err != nil {
		return nil, err
	}
	return append([]api.ReadinessCheck{{Name: "eventstore", Check: telemetry.EventStoreCheck(d.store).Check}}, kc...), nil
}

// newIngestHTTP wires `serve --role ingest`: the worker runs in the background,
// and the HTTP server answers only /health/live, /health/ready (PostgreSQL, the
// event store) and /metrics (pools), for the orchestrator and the scraper.
func newIngestHTTP(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger) (*fiber.App, error) {
	checks, err := startIngestWorker(ctx, cfg, d, log)
	if err != nil {
		return nil, err
	}
	readiness := append([]api.ReadinessCheck{{Name: "postgres", Check: d.pool.Ping}}, checks...)
	deps := api.Deps{Readiness: readiness, Logger: log}
	if d.obs != nil {
		deps.Metrics = d.obs.metrics
		deps.Tracer = d.obs.tracing.Provider
	}
	return api.New(api.Config{RateLimits: rateLimits(cfg), TrustedProxies: cfg.TrustedProxies}, deps), nil
}

// registerKafkaLag exposes mediamesh_consumer_lag under MEDIAMESH_BUS=kafka (roles
// projector and all): the live projection versions' groups on content.events (read
// from the manager's status at scrape time, so a switched rebuild's group is
// followed) and the ingest workers' group on ingest.events.
func registerKafkaLag(cfg config.Config, d *deps, status func(ctx context.Context) ([]string, error)) error {
	if cfg.Bus != config.BusKafka || d.obs == nil {
		return nil
	}
	kc := kafkaConfig(cfg)
	sc, err := kafka.NewSaramaConfig(kc)
	if err != nil {
		return err
	}
	client, err := sarama.NewClient(kc.Brokers, sc)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		_ = client.Close()
		return fmt.Errorf("kafka admin: %w", err)
	}
	// Closing the admin closes the client it shares.
	d.closers = append(d.closers, func() { _ = admin.Close() })
	ingestLag := telemetry.KafkaConsumerLag(client, admin, kafka.TopicIngestEvents, ingest.ConsumerGroup)
	return d.obs.metrics.RegisterConsumerLag(func(ctx context.Context) ([]telemetry.ConsumerLag, error) {
		names, err := status(ctx)
		if err != nil {
			return nil, err
		}
		groups := make([]string, len(names))
		for i, n := range names {
			groups[i] = kafka.GroupName(n)
		}
		lags, err := telemetry.KafkaConsumerLag(client, admin, kafka.TopicContentEvents, groups...)(ctx)
		if err != nil {
			return nil, err
		}
		il, err := ingestLag(ctx)
		if err != nil {
			return nil, err
		}
		return append(lags, il...), nil
	})
}

// runIngest is `mediamesh ingest FILE [--no-worker]`: the file is submitted as
// POST /v1/ingest would submit it (actor "cli"), then awaited; a worker runs in
// this process unless --no-worker (then a server's ingest role must run one).
func runIngest(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "ingest", "FILE [--no-worker]")
	noWorker := fs.Bool("no-worker", false, "only submit and wait: an ingest role elsewhere applies the items")
	if err := parseFlags(fs, reorderFlags(args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	cfg, log, err := setup(e)
	if err != nil {
		return err
	}
	job, err := ingestFile(ctx, e, cfg, log, fs.Arg(0), !*noWorker)
	if err != nil {
		return err
	}
	if job.Status != ingest.StatusCompleted {
		return fmt.Errorf("ingest job %s %s: %d of %d items failed", job.ID, job.Status, job.Failed, job.Total)
	}
	return nil
}

// reorderFlags moves flags before the positional arguments, so both
// `ingest FILE --no-worker` and `ingest --no-worker FILE` parse.
func reorderFlags(args []string) []string {
	var flags, rest []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
		} else {
			rest = append(rest, a)
		}
	}
	return append(flags, rest...)
}

// ingestFile submits path through the ingest service of cfg, with a worker in
// this process when worker is set, waits for its job, and prints the job's counts
// and item errors to e.stdout. A job with failed items is returned without error.
func ingestFile(ctx context.Context, e env, cfg config.Config, log *slog.Logger, path string, worker bool) (ingest.Job, error) {
	if worker {
		cfg.DatabaseURL = withPoolConns(cfg.DatabaseURL, ingestPoolConns)
	}
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return ingest.Job{}, err
	}
	defer d.close()
	svc, err := newIngestService(cfg, d, log)
	if err != nil {
		return ingest.Job{}, err
	}
	if worker {
		if _, err := startIngestWorker(ctx, cfg, d, log); err != nil {
			return ingest.Job{}, err
		}
	}
	progress := e.stderr
	if progress == nil {
		progress = os.Stderr
	}
	job, err := ingest.SubmitFile(ctx, svc, path, "cli", progress)
	if job.ID != "" {
		fmt.Fprintf(e.stdout, "job %s %s: %d items, %d succeeded, %d failed\n", job.ID, job.Status, job.Total, job.Succeeded, job.Failed)
		for _, ie := range job.Errors {
			fmt.Fprintf(e.stdout, "  line %d %s: %s\n", ie.Line, ie.ExternalID, ie.Message)
		}
	}
	if err != nil {
		return job, fmt.Errorf("ingest %s: %w", path, err)
	}
	return job, nil
}
