// Package sql is the embedded mode's bus (MEDIAMESH_BUS=postgres): durable
// Watermill SQL topics in PostgreSQL (watermill-sql v4 over pgx, its PostgreSQL
// schema and offsets adapters). It serves any topic (ingest.events now,
// engagement.events later) through Watermill's message.Publisher and
// message.Subscriber, so the command side does not know which bus it runs on.
//
// # Partitions
//
// One Watermill SQL consumer group consumes one table strictly one message at a
// time: the next message is handed out only after the previous one's Ack, inside
// one transaction that holds the group's offset row. That is per-key order for
// free, but a single sequence of round trips. Like Kafka's partitions, Config.
// Partitions splits a topic into that many tables ("<topic>.p<N>", or the topic
// itself for one partition); the publisher sends each message to the partition of
// its PartitionKeyMetadata (FNV-1a hash), and Subscribe consumes every partition at
// once and merges them into one channel. So a consumer has up to Partitions
// messages in flight, messages of one key stay in publish order, and several
// processes in one consumer group share the partitions (each partition's offset row
// lock lets one process at a time read it). Changing the partition count of a topic
// that holds unconsumed messages moves keys between partitions: drain it first.
//
// # Costs worth knowing
//
// A subscription reads up to Config.BatchSize messages per transaction and keeps
// that transaction open (with a transaction id, for its row lock) until the batch
// is acknowledged. PostgreSQL-based readers that wait for older transactions to end
// (the event store's global log, Watermill SQL itself) see newer writes only after
// it commits, so a large batch delays them by the batch's processing time.
// Each partition's subscription also holds a pool connection during its batch: the
// pool needs more than Config.Partitions connections (NewSubscriber checks it),
// plus what the message handlers use.
package sql

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PartitionKeyMetadata is the message metadata field whose value picks the
// partition; it has the same name as the Kafka adapter's (infra/bus/kafka).
const PartitionKeyMetadata = "partition_key"

// Defaults of Config.
const (
	DefaultBatchSize      = 25
	DefaultPollInterval   = 100 * time.Millisecond
	DefaultAckDeadline    = 30 * time.Second
	DefaultResendInterval = 500 * time.Millisecond
)

// Config configures publishers and subscribers; zero fields take the defaults.
// Publishers and subscribers of one topic must agree on Partitions.
type Config struct {
	// Partitions is how many tables a topic is spread over (1).
	Partitions int
	// BatchSize is how many messages a subscription reads per transaction (25).
	BatchSize int
	// PollInterval is how long an idle subscription waits before it looks again
	// (100 ms): the delivery latency of a quiet topic.
	PollInterval time.Duration
	// AckDeadline is how long a delivered message may stay unacknowledged before it
	// is taken back and delivered again (30 s).
	AckDeadline time.Duration
	// ResendInterval is the pause before a nacked message is delivered again (500 ms).
	ResendInterval time.Duration
	// Logger receives Watermill's logs (none by default).
	Logger watermill.LoggerAdapter
}

func (c Config) withDefaults() Config {
	if c.Partitions <= 0 {
		c.Partitions = 1
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.AckDeadline <= 0 {
		c.AckDeadline = DefaultAckDeadline
	}
	if c.ResendInterval <= 0 {
		c.ResendInterval = DefaultResendInterval
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
	return c
}

// PartitionTopic is the Watermill topic (table) of one partition of topic.
func PartitionTopic(topic string, partition, partitions int) string {
	if partitions <= 1 {
		return topic
	}
	return topic + ".p" + strconv.Itoa(partition)
}

// PartitionOf returns the partition of a key: FNV-1a of the key modulo partitions.
func PartitionOf(key string, partitions int) int {
	if partitions <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(partitions))
}

// schema is Watermill's PostgreSQL schema with a BYTEA payload: payloads are
// opaque bytes to a bus (the default JSON column would refuse any other payload
// and parse every JSON one on insert).
func schema(c Config) wmsql.DefaultPostgreSQLSchema {
	return wmsql.DefaultPostgreSQLSchema{
		SubscribeBatchSize:  c.BatchSize,
		GeneratePayloadType: func(string) string { return "BYTEA" },
	}
}

// Publisher publishes to the partitions of a topic. It implements message.Publisher.
type Publisher struct {
	pub *wmsql.Publisher
	cfg Config
}

// NewPublisher returns a publisher that writes through pool. Each partition's table
// is created on its first publish if missing.
func NewPublisher(pool *pgxpool.Pool, c Config) (*Publisher, error) {
	if pool == nil {
		return nil, errors.New("sql publisher: nil pool")
	}
	c = c.withDefaults()
	pub, err := wmsql.NewPublisher(wmsql.BeginnerFromPgx(pool), wmsql.PublisherConfig{
		SchemaAdapter:        schema(c),
		AutoInitializeSchema: true,
	}, c.Logger)
	if err != nil {
		return nil, fmt.Errorf("sql publisher: %w", err)
	}
	return &Publisher{pub: pub, cfg: c}, nil
}

// Publish implements message.Publisher: the messages of each partition are
// inserted with one statement, in order, and Publish returns once all are
// committed. A message without a partition key goes to the partition of its UUID.
// Like every Watermill publisher it is not atomic across partitions: on an error
// some partitions may have been written.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if p.cfg.Partitions == 1 {
		return p.publish(topic, msgs)
	}
	parts := make([][]*message.Message, p.cfg.Partitions)
	for _, m := range msgs {
		key := m.Metadata.Get(PartitionKeyMetadata)
		if key == "" {
			key = m.UUID
		}
		i := PartitionOf(key, p.cfg.Partitions)
		parts[i] = append(parts[i], m)
	}
	for i, part := range parts {
		if len(part) == 0 {
			continue
		}
		if err := p.publish(PartitionTopic(topic, i, p.cfg.Partitions), part); err != nil {
			return err
		}
	}
	return nil
}

func (p *Publisher) publish(topic string, msgs []*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := p.pub.Publish(topic, msgs...); err != nil {
		return fmt.Errorf("publish %d messages to %s: %w", len(msgs), topic, err)
	}
	return nil
}

// Close implements message.Publisher; it waits for publishes in progress.
func (p *Publisher) Close() error { return p.pub.Close() }

// Subscriber consumes the partitions of a topic in one consumer group. It
// implements message.Subscriber.
type Subscriber struct {
	sub *wmsql.Subscriber
	cfg Config
	// merging counts the subscriptions whose merged channel is not closed yet;
	// closing is closed by Close, which stops them all.
	merging   sync.WaitGroup
	closing   chan struct{}
	closeOnce sync.Once
}

// NewSubscriber returns a subscriber of consumer group group, reading through
// pool, which must allow more connections than c.Partitions (see the package
// documentation). Tables and the group's offsets are created on Subscribe if
// missing; a new group starts at the topic's first message.
func NewSubscriber(pool *pgxpool.Pool, group string, c Config) (*Subscriber, error) {
	if pool == nil {
		return nil, errors.New("sql subscriber: nil pool")
	}
	if group == "" {
		return nil, errors.New("sql subscriber: empty consumer group")
	}
	c = c.withDefaults()
	if max := int(pool.Config().MaxConns); max <= c.Partitions {
		return nil, fmt.Errorf("sql subscriber: the pool allows %d connections, and %d partitions hold one each while they deliver: raise pool_max_conns above %d", max, c.Partitions, c.Partitions)
	}
	deadline := c.AckDeadline
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromPgx(pool), wmsql.SubscriberConfig{
		ConsumerGroup:    group,
		AckDeadline:      &deadline,
		PollInterval:     c.PollInterval,
		ResendInterval:   c.ResendInterval,
		RetryInterval:    c.PollInterval * 5,
		SchemaAdapter:    schema(c),
		OffsetsAdapter:   wmsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
	}, c.Logger)
	if err != nil {
		return nil, fmt.Errorf("sql subscriber: %w", err)
	}
	return &Subscriber{sub: sub, cfg: c, closing: make(chan struct{})}, nil
}

// Subscribe implements message.Subscriber: it consumes every partition of topic
// and merges them into the returned channel, which is closed when ctx ends or the
// subscriber is closed. Up to one message per partition is outstanding at a time;
// each must be acked (or nacked) for its partition to go on.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ctx, cancel := context.WithCancel(ctx)
	ins := make([]<-chan *message.Message, 0, s.cfg.Partitions)
	for i := range s.cfg.Partitions {
		in, err := s.sub.Subscribe(ctx, PartitionTopic(topic, i, s.cfg.Partitions))
		if err != nil {
			cancel()
			return nil, fmt.Errorf("subscribe to %s: %w", PartitionTopic(topic, i, s.cfg.Partitions), err)
		}
		ins = append(ins, in)
	}
	out := make(chan *message.Message)
	s.merging.Add(1)
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range in {
				select {
				case out <- m:
				case <-ctx.Done():
					// Not acked: the partition delivers it again to the next
					// subscription.
				case <-s.closing:
				}
			}
		}()
	}
	go func() {
		defer s.merging.Done()
		wg.Wait()
		cancel()
		close(out)
	}()
	return out, nil
}

// Close implements message.Subscriber: it ends every subscription and returns once
// their channels are closed.
func (s *Subscriber) Close() error {
	s.closeOnce.Do(func() { close(s.closing) })
	err := s.sub.Close()
	s.merging.Wait()
	return err
}

// Prune deletes the messages of topic's partitions that every consumer group has
// acknowledged and that are older than olderThan, and returns how many it deleted.
// created_at is Watermill's timestamp without time zone, taken in the session's
// time zone, so every session must use the same one (the server's default).
// Watermill SQL never deletes consumed messages itself, so a deployment runs this
// periodically (a feed's messages are as large as the feed). A partition without
// consumer groups yet is left alone; a group that stopped consuming holds its
// partitions' messages back, as it should.
func Prune(ctx context.Context, pool *pgxpool.Pool, topic string, c Config, olderThan time.Duration) (int64, error) {
	c = c.withDefaults()
	s := schema(c)
	offsets := wmsql.DefaultPostgreSQLOffsetsAdapter{}
	var total int64
	for i := range c.Partitions {
		pt := PartitionTopic(topic, i, c.Partitions)
		// Everything below the oldest group's last transaction is consumed by all;
		// within that transaction, what is at or below that group's offset.
		q := `WITH low AS (
				SELECT last_processed_transaction_id AS tx, offset_acked AS off
				FROM ` + offsets.MessagesOffsetsTable(pt) + `
				ORDER BY last_processed_transaction_id, offset_acked LIMIT 1)
			DELETE FROM ` + s.MessagesTable(pt) + ` m USING low
			WHERE (m.transaction_id < low.tx OR (m.transaction_id = low.tx AND m."offset" <= low.off))
			  AND m.created_at < LOCALTIMESTAMP - $1 * interval '1 microsecond'`
		tag, err := pool.Exec(ctx, q, olderThan.Microseconds())
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: never used
				continue
			}
			return total, fmt.Errorf("prune %s: %w", pt, err)
		}
		total += tag.RowsAffected()
	}
	return total, nil
}
