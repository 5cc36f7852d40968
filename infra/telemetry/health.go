package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Check is one dependency of /health/ready: the api's ReadinessCheck has the same
// two fields (api.ReadinessCheck{Name: c.Name, Check: c.Check}). Each role checks
// its own dependencies only: the query role PostgreSQL (its read pool) and Redis,
// the command role PostgreSQL and the event store, the relay the event store and
// Kafka, a projector the event store and its sinks.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// PostgresCheck pings a pool (name: "postgres", or "postgres-replica" for a read
// pool).
func PostgresCheck(name string, pool *pgxpool.Pool) Check {
	return Check{Name: name, Check: func(ctx context.Context) error {
		if pool == nil {
			return errors.New("no pool")
		}
		return pool.Ping(ctx)
	}}
}

// RedisCheck pings Redis (a go-redis universal client: one node or a cluster).
func RedisCheck(client redis.UniversalClient) Check {
	return Check{Name: "redis", Check: func(ctx context.Context) error {
		if client == nil {
			return errors.New("no client")
		}
		return client.Ping(ctx).Err()
	}}
}

// KafkaCheck refreshes the metadata of topics (all topics when none are given)
// from the brokers: it fails when no broker answers or a topic is unknown.
func KafkaCheck(client sarama.Client, topics ...string) Check {
	return Check{Name: "kafka", Check: func(ctx context.Context) error {
		if client == nil {
			return errors.New("no client")
		}
		_, err := withContext(ctx, func() (struct{}, error) {
			if err := client.RefreshMetadata(topics...); err != nil {
				return struct{}{}, err
			}
			for _, t := range topics {
				if _, err := client.Partitions(t); err != nil {
					return struct{}{}, fmt.Errorf("topic %s: %w", t, err)
				}
			}
			return struct{}{}, nil
		})
		return err
	}}
}

// EventStoreCheck reads the event store's head position, which any event store
// adapter (PostgreSQL or EventStoreDB) answers only when it is reachable.
func EventStoreCheck(store interface {
	HeadPosition(ctx context.Context) (int64, error)
}) Check {
	return Check{Name: "eventstore", Check: func(ctx context.Context) error {
		if store == nil {
			return errors.New("no event store")
		}
		_, err := store.HeadPosition(ctx)
		return err
	}}
}

// RedisHook returns a go-redis hook (client.AddHook) that counts failed commands,
// pipelines and dials in mediamesh_redis_errors_total{kind}. A missing key
// (redis.Nil) is an answer, not an error.
//
// It creates the three kinds' series at zero, so that a healthy Redis shows
// mediamesh_redis_errors_total at 0 (and rate() and absent() work) rather than no
// series at all.
func (m *Metrics) RedisHook() redis.Hook {
	for _, kind := range []string{"dial", "command", "pipeline"} {
		m.redisErrors.WithLabelValues(kind)
	}
	return redisHook{m}
}

type redisHook struct{ m *Metrics }

func (h redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			h.m.RedisError("dial")
		}
		return c, err
	}
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && !errors.Is(err, redis.Nil) {
			h.m.RedisError("command")
		}
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil && !errors.Is(err, redis.Nil) {
			h.m.RedisError("pipeline")
		}
		return err
	}
}
