package sql_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/command/ingest"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	bussql "github.com/mediamesh/mediamesh/infra/bus/sql"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// newPool returns a pool with room for the partitions' subscriptions on a fresh
// database.
func newPool(t *testing.T, conns int) *pgxpool.Pool {
	t.Helper()
	_, url := pgtest.NewDB(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = int32(conns)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestPartitionKeyNamesAgree(t *testing.T) {
	t.Parallel()
	names := map[string]string{"sql": bussql.PartitionKeyMetadata, "kafka": kafka.PartitionKeyMetadata, "ingest": ingest.PartitionKeyMetadata}
	for who, name := range names {
		if name != names["sql"] {
			t.Errorf("partition key metadata: %s says %q, sql %q: they must agree", who, name, names["sql"])
		}
	}
}

func TestPartitioning(t *testing.T) {
	t.Parallel()
	tests := []struct {
		topic      string
		partition  int
		partitions int
		want       string
	}{
		{"ingest.events", 0, 1, "ingest.events"},
		{"ingest.events", 3, 10, "ingest.events.p3"},
	}
	for _, tc := range tests {
		if got := bussql.PartitionTopic(tc.topic, tc.partition, tc.partitions); got != tc.want {
			t.Errorf("PartitionTopic(%q, %d, %d) = %q, want %q", tc.topic, tc.partition, tc.partitions, got, tc.want)
		}
	}
	seen := map[int]bool{}
	for i := range 1000 {
		p := bussql.PartitionOf("key-"+strconv.Itoa(i), 10)
		if p < 0 || p >= 10 {
			t.Fatalf("partition %d out of range", p)
		}
		if p != bussql.PartitionOf("key-"+strconv.Itoa(i), 10) {
			t.Fatal("partition of a key is not stable")
		}
		seen[p] = true
	}
	if len(seen) != 10 {
		t.Fatalf("1,000 keys used %d of 10 partitions", len(seen))
	}
}

func TestSubscriberNeedsConnections(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 4)
	if _, err := bussql.NewSubscriber(pool, "g", bussql.Config{Partitions: 4}); err == nil {
		t.Fatal("a pool of 4 connections was accepted for 4 partitions")
	}
	if _, err := bussql.NewSubscriber(pool, "g", bussql.Config{Partitions: 3}); err != nil {
		t.Fatalf("3 partitions on 4 connections: %v", err)
	}
}

// keyedPublisher keys each message by its payload, as the conformance suite's
// in-order test groups messages by payload (see the Kafka adapter's test).
type keyedPublisher struct{ message.Publisher }

func (p keyedPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		m.Metadata.Set(bussql.PartitionKeyMetadata, string(m.Payload))
	}
	return p.Publisher.Publish(topic, msgs...)
}

// TestWatermillConformance runs Watermill's universal Pub/Sub tests on our
// configuration with 3 partitions, one after another. Left out:
// TestPublishSubscribeInOrder and TestConcurrentClose, which run ten subscribers of
// one group in one process on one pool (tens of subscriptions queueing for its
// connections and the group's row locks take minutes), and TestNoAck, which gives a
// message 5 s to arrive: a Watermill SQL message becomes visible only once every
// older transaction in the whole PostgreSQL cluster has ended, and other test
// packages hold transactions open on purpose (the event store's out-of-order commit
// test). TestKeyOrderAndRedelivery below checks order per key, blocking until the
// ack, and redelivery instead, with bounded waits. Global order is not promised
// across partitions, and a message in flight when a subscription ends is delivered
// again (not exactly once).
func TestWatermillConformance(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 16)
	cfg := bussql.Config{Partitions: 3, PollInterval: 10 * time.Millisecond, ResendInterval: 5 * time.Millisecond, AckDeadline: 5 * time.Second}
	withGroup := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := bussql.NewPublisher(pool, cfg)
		if err != nil {
			t.Fatalf("publisher: %v", err)
		}
		sub, err := bussql.NewSubscriber(pool, group, cfg)
		if err != nil {
			t.Fatalf("subscriber: %v", err)
		}
		return keyedPublisher{pub}, sub
	}
	features := tests.Features{ConsumerGroups: true, ExactlyOnceDelivery: false, GuaranteedOrder: true, Persistent: true, ForceShort: true}
	constructor := func(t *testing.T) (message.Publisher, message.Subscriber) { return withGroup(t, "conformance") }
	suite := []struct {
		name string
		run  func(*testing.T, tests.TestContext, tests.PubSubConstructor)
	}{
		{"PublishSubscribe", tests.TestPublishSubscribe},
		{"ConcurrentSubscribe", tests.TestConcurrentSubscribe},
		{"ConcurrentSubscribeMultipleTopics", tests.TestConcurrentSubscribeMultipleTopics},
		{"ResendOnError", tests.TestResendOnError},
		{"ContinueAfterSubscribeClose", tests.TestContinueAfterSubscribeClose},
		{"ContinueAfterErrors", tests.TestContinueAfterErrors},
		{"PublisherClose", tests.TestPublisherClose},
		{"Topic", tests.TestTopic},
		{"MessageCtx", tests.TestMessageCtx},
		{"SubscribeCtx", tests.TestSubscribeCtx},
		{"NewSubscriberReceivesOldMessages", tests.TestNewSubscriberReceivesOldMessages},
	}
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, tests.TestContext{TestID: tests.NewTestID(), Features: features}, constructor)
		})
	}
	t.Run("ConsumerGroups", func(t *testing.T) {
		tests.TestConsumerGroups(t, tests.TestContext{TestID: tests.NewTestID(), Features: features}, withGroup)
	})
}

// TestKeyOrderAndRedelivery: messages of one key arrive in publish order across
// partitions; a subscription cancelled with messages unacknowledged loses none of
// them to the next subscription of the same group.
func TestKeyOrderAndRedelivery(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 12)
	cfg := bussql.Config{Partitions: 4, PollInterval: 10 * time.Millisecond, BatchSize: 10}
	pub, err := bussql.NewPublisher(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const keys, perKey = 20, 15
	var msgs []*message.Message
	for i := range perKey {
		for k := range keys {
			m := message.NewMessage(fmt.Sprintf("%d-%d", k, i), []byte(strconv.Itoa(i)))
			m.Metadata.Set(bussql.PartitionKeyMetadata, "k"+strconv.Itoa(k))
			msgs = append(msgs, m)
		}
	}
	if err := pub.Publish("orders", msgs...); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	last := map[string]int{}   // key -> last sequence acked
	acked := map[string]bool{} // message id -> acked
	consume := func(stopAfter int) {
		t.Helper()
		sub, err := bussql.NewSubscriber(pool, "g", cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ch, err := sub.Subscribe(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range ch {
			mu.Lock()
			key := m.Metadata.Get(bussql.PartitionKeyMetadata)
			seq, _ := strconv.Atoi(string(m.Payload))
			if prev, ok := last[key]; acked[m.UUID] {
				// A redelivery of an acked message is allowed, never a step back.
			} else if ok && seq != prev+1 || !ok && seq != 0 {
				mu.Unlock()
				t.Errorf("key %s: got %d after %d", key, seq, prev)
				cancel()
				continue
			}
			n++
			if n > stopAfter {
				// Stop without acking: this one must come again.
				mu.Unlock()
				cancel()
				continue
			}
			last[key], acked[m.UUID] = seq, true
			done := len(acked) == keys*perKey
			mu.Unlock()
			m.Ack()
			if done {
				cancel()
			}
		}
	}
	consume(100)
	mu.Lock()
	first := len(acked)
	mu.Unlock()
	if first == 0 || first >= keys*perKey {
		t.Fatalf("first subscription acked %d messages, want some but not all", first)
	}
	consume(1 << 30)
	if len(acked) != keys*perKey {
		t.Fatalf("acked %d of %d messages", len(acked), keys*perKey)
	}
}

func TestPrune(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 8)
	cfg := bussql.Config{Partitions: 2, PollInterval: 10 * time.Millisecond}
	ctx := context.Background()
	if n, err := bussql.Prune(ctx, pool, "never.used", cfg, 0); err != nil || n != 0 {
		t.Fatalf("prune of a topic without tables: %d, %v", n, err)
	}
	pub, err := bussql.NewPublisher(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*message.Message
	for i := range 20 {
		m := message.NewMessage(strconv.Itoa(i), []byte("x"))
		m.Metadata.Set(bussql.PartitionKeyMetadata, strconv.Itoa(i))
		msgs = append(msgs, m)
	}
	if err := pub.Publish("prune.me", msgs...); err != nil {
		t.Fatal(err)
	}
	consume := func(group string, n int) {
		t.Helper()
		sub, err := bussql.NewSubscriber(pool, group, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		ch, err := sub.Subscribe(cctx, "prune.me")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			m, ok := <-ch
			if !ok {
				t.Fatal("subscription ended early")
			}
			m.Ack()
		}
		// The offsets are stored when a batch's transaction commits, after the
		// last ack: cancelling at once could roll them back.
		for p := 0; n > 0 && p < cfg.Partitions; p++ {
			table := pgx.Identifier{"watermill_offsets_" + bussql.PartitionTopic("prune.me", p, cfg.Partitions)}.Sanitize()
			waitFor(t, func() bool {
				var acked int64
				err := pool.QueryRow(ctx, `SELECT coalesce(max(offset_acked), 0) FROM `+table+` WHERE consumer_group = $1`, group).Scan(&acked)
				return err == nil && acked > 0
			})
		}
		cancel()
		for range ch {
		}
	}
	consume("fast", 20)
	consume("slow", 0) // a group that has read nothing holds everything back
	if n, err := bussql.Prune(ctx, pool, "prune.me", cfg, 0); err != nil || n != 0 {
		t.Fatalf("prune while a group has read nothing: %d, %v", n, err)
	}
	consume("slow", 20)
	if n, err := bussql.Prune(ctx, pool, "prune.me", cfg, time.Hour); err != nil || n != 0 {
		t.Fatalf("prune of recent messages: %d, %v", n, err)
	}
	if n, err := bussql.Prune(ctx, pool, "prune.me", cfg, 0); err != nil || n != 20 {
		t.Fatalf("prune of consumed messages: %d, %v; want 20", n, err)
	}
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBlocksUntilAck: a partition hands out its next message only after the
// previous one's Ack (what keeps one key's messages in order).
func TestBlocksUntilAck(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 6)
	cfg := bussql.Config{Partitions: 2, PollInterval: 10 * time.Millisecond}
	pub, err := bussql.NewPublisher(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"first", "second"} {
		m := message.NewMessage(id, []byte(id))
		m.Metadata.Set(bussql.PartitionKeyMetadata, "same-key")
		if err := pub.Publish("acks", m); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := bussql.NewSubscriber(pool, "g", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch, err := sub.Subscribe(ctx, "acks")
	if err != nil {
		t.Fatal(err)
	}
	first := <-ch
	if first == nil || first.UUID != "first" {
		t.Fatalf("got %v first", first)
	}
	select {
	case m := <-ch:
		t.Fatalf("%s arrived before the first was acked", m.UUID)
	case <-time.After(200 * time.Millisecond):
	}
	first.Ack()
	select {
	case m := <-ch:
		if m == nil || m.UUID != "second" {
			t.Fatalf("got %v after the ack", m)
		}
		m.Ack()
	case <-ctx.Done():
		t.Fatal("the second message did not come after the ack")
	}
}
