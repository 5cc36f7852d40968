package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/telemetry"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// ensureTopicsTimeout bounds the topic creation at start: a Kafka that does not
// answer fails the start (the orchestrator restarts the role) instead of hanging it.
const ensureTopicsTimeout = 30 * time.Second

// kafkaConfig is the bus configuration of MEDIAMESH_KAFKA_BROKERS; the rest of
// infra/bus/kafka.Config keeps its verified defaults.
func kafkaConfig(cfg config.Config) kafka.Config {
	return kafka.Config{Brokers: cfg.KafkaBrokers}
}

// ensureTopics creates content.events and ingest.events with their partition
// counts when missing. Both the relay and the projectors call it at start: it is
// idempotent and safe from several processes, and a projector started before the
// first relay then joins its consumer groups instead of failing on an unknown
// topic.
func ensureTopics(ctx context.Context, cfg config.Config) error {
	ctx, cancel := context.WithTimeout(ctx, ensureTopicsTimeout)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, kafkaConfig(cfg), kafka.Topics()...); err != nil {
		return fmt.Errorf("%s: %w", config.KeyKafkaBrokers, err)
	}
	return nil
}

// projectionStream is where the live versions of the projections read events: nil
// under MEDIAMESH_BUS=postgres (the event store's global log, from each
// projection's checkpoint), and content.events under MEDIAMESH_BUS=kafka, in one
// consumer group per projection version ("mediamesh.projection.catalog.v1"). A
// rebuild still replays the event store itself (rebuild.Manager clears Stream for
// a version being rebuilt); once switched, the new version consumes with a group of
// its own from the topic's oldest offset, and the projections' idempotence absorbs
// the events it sees again. It does no I/O.
func projectionStream(cfg config.Config, log *slog.Logger) (runtime.Stream, error) {
	if cfg.Bus != config.BusKafka {
		return nil, nil
	}
	src, err := kafka.NewSource(kafkaConfig(cfg), kafka.SourceOptions{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.KeyKafkaBrokers, err)
	}
	return src, nil
}

// kafkaReadiness is the /health/ready check "kafka" of a role that consumes topics
// under MEDIAMESH_BUS=kafka (projector: content.events; ingest: ingest.events):
// the brokers answer and know the topics. None under MEDIAMESH_BUS=postgres.
func kafkaReadiness(cfg config.Config, d *deps, topics ...string) ([]api.ReadinessCheck, error) {
	if cfg.Bus != config.BusKafka {
		return nil, nil
	}
	kc := kafkaConfig(cfg)
	sc, err := kafka.NewSaramaConfig(kc)
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(kc.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("%s: kafka client: %w", config.KeyKafkaBrokers, err)
	}
	d.closers = append(d.closers, func() { _ = client.Close() })
	c := telemetry.KafkaCheck(client, topics...)
	return []api.ReadinessCheck{{Name: c.Name, Check: c.Check}}, nil
}
