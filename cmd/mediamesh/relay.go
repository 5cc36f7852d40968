package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/IBM/sarama"
	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/telemetry"
	"github.com/mediamesh/mediamesh/projections/relay"
)

// errRelayNeedsKafka: the relay publishes to Kafka; the embedded mode has nothing to
// relay (its projectors read the event store directly).
var errRelayNeedsKafka = fmt.Errorf("role relay needs %s=%s: under %s=%s the projectors read the event store directly",
	config.KeyBus, config.BusKafka, config.KeyBus, config.BusPostgres)

// startRelay creates the topics, opens a publisher and runs the relay in the
// background until the deps are closed: the event store's global log published to
// content.events, keyed by program, checkpointed after the brokers' acks. Every
// instance runs one; an advisory lock makes exactly one of them active, the others
// wait as hot standbys. It registers the relay's lag metric and returns the
// readiness checks of the event store and Kafka.
func startRelay(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger) ([]api.ReadinessCheck, error) {
	if cfg.Bus != config.BusKafka {
		return nil, errRelayNeedsKafka
	}
	if err := ensureTopics(ctx, cfg); err != nil {
		return nil, err
	}
	kc := kafkaConfig(cfg)
	pub, err := kafka.NewPublisher(kc, busLogger(log, "kafka-publisher"))
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	// Closers run in reverse order: the publisher closes after the relay stopped.
	d.closers = append(d.closers, func() {
		if err := pub.Close(); err != nil {
			log.Warn("close kafka publisher", "error", err.Error())
		}
	})
	r, err := relay.New(d.pool, d.store, pub, events.NewCodec(), relay.Config{Topic: kafka.TopicContentEvents, Logger: log})
	if err != nil {
		return nil, err
	}
	checks := []api.ReadinessCheck{{Name: "eventstore", Check: telemetry.EventStoreCheck(d.store).Check}}
	if d.obs != nil {
		err := d.obs.metrics.RegisterRelayLag(func(ctx context.Context) (int64, error) {
			l, err := r.Lag(ctx)
			return int64(l.Unpublished), err
		})
		if err != nil {
			return nil, err
		}
	}
	sc, err := kafka.NewSaramaConfig(kc)
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(kc.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	d.closers = append(d.closers, func() { _ = client.Close() })
	kcheck := telemetry.KafkaCheck(client, kafka.TopicContentEvents)
	checks = append(checks, api.ReadinessCheck{Name: kcheck.Name, Check: kcheck.Check})
	d.background(ctx, log, "relay", func(ctx context.Context) error {
		if err := r.Run(ctx); !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
	log.Info("relay running", "topic", kafka.TopicContentEvents, "brokers", cfg.KafkaBrokers)
	return checks, nil
}

// newRelayHTTP wires `serve --role relay`: the relay runs in the background, and
// the HTTP server answers only /health/live, /health/ready (PostgreSQL, the event
// store, Kafka) and /metrics (relay lag, pools), for the orchestrator and the
// scraper.
func newRelayHTTP(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger) (*fiber.App, error) {
	checks, err := startRelay(ctx, cfg, d, log)
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
