package kafka_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newPublisher(t *testing.T, cfg kafka.Config) message.Publisher {
	t.Helper()
	pub, err := kafka.NewPublisher(cfg, nil)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

func newSubscriber(t *testing.T, cfg kafka.Config, group string) message.Subscriber {
	t.Helper()
	sub, err := kafka.NewSubscriber(cfg, group, nil)
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

func ensureTopic(t *testing.T, cfg kafka.Config, name string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cfg, kafka.Topic{Name: name, Partitions: partitions}); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
}

// keyedMessage is message seq of key, carrying both in metadata.
func keyedMessage(key string, seq int) *message.Message {
	m := message.NewMessage(fmt.Sprintf("%s-%d", key, seq), []byte(fmt.Sprintf("%s:%d", key, seq)))
	m.Metadata.Set(kafka.PartitionKeyMetadata, key)
	m.Metadata.Set("seq", strconv.Itoa(seq))
	return m
}

// publishRounds publishes seq from..to-1 for every key, interleaving keys.
func publishRounds(t *testing.T, pub message.Publisher, topic string, keys []string, from, to int) {
	t.Helper()
	for seq := from; seq < to; seq++ {
		for _, k := range keys {
			if err := pub.Publish(topic, keyedMessage(k, seq)); err != nil {
				t.Fatalf("publish %s:%d: %v", k, seq, err)
			}
		}
	}
}

func makeKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("program-%03d", i)
	}
	return keys
}

// delivery is one message as a consumer saw it.
type delivery struct {
	consumer  string
	key       string
	seq       int
	partition int32
	offset    int64
	kafkaKey  string
}

// recorder collects deliveries from several consumers.
type recorder struct {
	mu  sync.Mutex
	got []delivery
}

func (r *recorder) add(d delivery) {
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func (r *recorder) count(filter func(delivery) bool) int {
	n := 0
	for _, d := range r.snapshot() {
		if filter(d) {
			n++
		}
	}
	return n
}

// distinct is how many different (key, seq) pairs were delivered.
func (r *recorder) distinct() int {
	seen := map[string]bool{}
	for _, d := range r.snapshot() {
		seen[fmt.Sprintf("%s:%d", d.key, d.seq)] = true
	}
	return len(seen)
}

func toDelivery(t *testing.T, consumer string, m *message.Message) delivery {
	t.Helper()
	seq, err := strconv.Atoi(m.Metadata.Get("seq"))
	if err != nil {
		t.Errorf("message %s: seq: %v", m.UUID, err)
	}
	p, _ := wmkafka.MessagePartitionFromCtx(m.Context())
	o, _ := wmkafka.MessagePartitionOffsetFromCtx(m.Context())
	k, _ := wmkafka.MessageKeyFromCtx(m.Context())
	return delivery{consumer: consumer, key: m.Metadata.Get(kafka.PartitionKeyMetadata), seq: seq, partition: p, offset: o, kafkaKey: string(k)}
}

// consume records and acks every message of ch until it closes. before runs before
// each ack and may hold it back (to throttle) or return false to leave the message
// unacked and stop consuming.
func consume(t *testing.T, name string, ch <-chan *message.Message, rec *recorder, before func(delivery) bool) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			d := toDelivery(t, name, m)
			if before != nil && !before(d) {
				return
			}
			rec.add(d)
			m.Ack()
		}
	}()
	return done
}

func TestEnsureTopics(t *testing.T) {
	t.Parallel()
	cfg := kafka.Config{Brokers: kafkatest.Start(t, 3)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A topic that already exists with another partition count is left alone.
	ensureTopic(t, cfg, kafka.TopicIngestEvents, 3)
	for range 2 { // the second run finds everything in place
		if err := kafka.EnsureTopics(ctx, cfg, kafka.Topics()...); err != nil {
			t.Fatalf("EnsureTopics: %v", err)
		}
	}
	sc, err := kafka.NewSaramaConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	for _, tt := range []struct {
		topic string
		want  int
	}{{kafka.TopicContentEvents, 20}, {kafka.TopicIngestEvents, 3}} {
		ps, err := client.Partitions(tt.topic)
		if err != nil {
			t.Fatalf("partitions of %s: %v", tt.topic, err)
		}
		if len(ps) != tt.want {
			t.Errorf("%s has %d partitions, want %d", tt.topic, len(ps), tt.want)
		}
	}
	if err := kafka.EnsureTopics(ctx, cfg, kafka.Topic{Name: "bad", Partitions: 0}); err == nil {
		t.Error("EnsureTopics accepted 0 partitions")
	}
}

// TestPublishToMissingTopicFails: topics come from EnsureTopics with their partition
// counts, never from a publish with the broker's defaults.
func TestPublishToMissingTopicFails(t *testing.T) {
	t.Parallel()
	cfg := kafka.Config{Brokers: kafkatest.Start(t, 1)}
	pub := newPublisher(t, cfg)
	if err := pub.Publish("no.such.topic", keyedMessage("p", 1)); err == nil {
		t.Fatal("publishing to a topic that was never created succeeded")
	}
}

// TestKeyedOrderAndPartitions: every message of a key lands on one partition, in
// publish order, with the key as the Kafka key.
func TestKeyedOrderAndPartitions(t *testing.T) {
	t.Parallel()
	cfg := kafka.Config{Brokers: kafkatest.Start(t, 3)}
	const topic = "keyed"
	ensureTopic(t, cfg, topic, 20)
	keys := makeKeys(40)
	const perKey = 25
	publishRounds(t, newPublisher(t, cfg), topic, keys, 0, perKey)

	ch, err := newSubscriber(t, cfg, "keyed-test").Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	rec := &recorder{}
	consume(t, "c", ch, rec, nil)
	waitFor(t, 30*time.Second, "every message", func() bool { return rec.distinct() == len(keys)*perKey })

	partitionOf := map[string]int32{}
	next := map[string]int{}
	used := map[int32]bool{}
	for _, d := range rec.snapshot() {
		if d.kafkaKey != d.key {
			t.Fatalf("message %s:%d has Kafka key %q", d.key, d.seq, d.kafkaKey)
		}
		if p, ok := partitionOf[d.key]; ok && p != d.partition {
			t.Fatalf("key %s on partitions %d and %d", d.key, p, d.partition)
		}
		partitionOf[d.key] = d.partition
		used[d.partition] = true
		if d.seq != next[d.key] {
			t.Fatalf("key %s: got seq %d, want %d", d.key, d.seq, next[d.key])
		}
		next[d.key]++
	}
	if len(used) < 5 {
		t.Errorf("40 keys used only %d of 20 partitions: keys are not spread", len(used))
	}
}

// TestConsumerGroupSplitsPartitions: two members of one group share the topic's
// partitions: each partition is consumed by exactly one of them, both get work, and
// nothing is lost.
func TestConsumerGroupSplitsPartitions(t *testing.T) {
	t.Parallel()
	cfg := kafka.Config{Brokers: kafkatest.Start(t, 3)}
	const topic = "split"
	ensureTopic(t, cfg, topic, 20)
	pub := newPublisher(t, cfg)
	keys := makeKeys(60)
	rec := &recorder{}
	for _, name := range []string{"a", "b"} {
		ch, err := newSubscriber(t, cfg, "split-test").Subscribe(t.Context(), topic)
		if err != nil {
			t.Fatalf("subscribe %s: %v", name, err)
		}
		consume(t, name, ch, rec, nil)
	}
	// Warm up until both members have been given partitions: the group is stable.
	round := 0
	waitFor(t, 30*time.Second, "both members to receive messages", func() bool {
		publishRounds(t, pub, topic, keys, round, round+1)
		round++
		return rec.count(func(d delivery) bool { return d.consumer == "a" }) > 0 &&
			rec.count(func(d delivery) bool { return d.consumer == "b" }) > 0
	})
	stable := round
	publishRounds(t, pub, topic, keys, stable, stable+10)
	waitFor(t, 30*time.Second, "every message", func() bool { return rec.distinct() == len(keys)*(stable+10) })

	owner := map[int32]string{}
	perConsumer := map[string]int{}
	for _, d := range rec.snapshot() {
		if d.seq < stable {
			continue
		}
		if o, ok := owner[d.partition]; ok && o != d.consumer {
			t.Fatalf("partition %d consumed by both %s and %s after the group was stable", d.partition, o, d.consumer)
		}
		owner[d.partition] = d.consumer
		perConsumer[d.consumer]++
	}
	if perConsumer["a"] == 0 || perConsumer["b"] == 0 {
		t.Fatalf("work not split: %v", perConsumer)
	}
	t.Logf("after the group was stable: %v messages per member over %d partitions", perConsumer, len(owner))
}

// TestOrderAcrossRebalance: a second member joins and then the first leaves while
// messages flow. For every key, a message is delivered only after all earlier ones
// of that key were delivered (redelivery of earlier ones is allowed: consumers are
// idempotent), and nothing is lost.
func TestOrderAcrossRebalance(t *testing.T) {
	t.Parallel()
	cfg := kafka.Config{Brokers: kafkatest.Start(t, 3)}
	const topic = "rebalance"
	ensureTopic(t, cfg, topic, 20)
	keys := makeKeys(30)
	const perKey = 100
	publishRounds(t, newPublisher(t, cfg), topic, keys, 0, perKey)
	total := len(keys) * perKey

	rec := &recorder{}
	// Throttle the consumers so the rebalances happen mid-stream, not after the end.
	throttle := func(delivery) bool { time.Sleep(time.Millisecond); return true }

	subA, err := kafka.NewSubscriber(cfg, "rebalance-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	chA, err := subA.Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, "a", chA, rec, throttle)
	waitFor(t, 30*time.Second, "a to consume 300", func() bool { return len(rec.snapshot()) >= 300 })

	chB, err := newSubscriber(t, cfg, "rebalance-test").Subscribe(t.Context(), topic)
	if err != nil {
		t.Fatal(err)
	}
	consume(t, "b", chB, rec, throttle)
	waitFor(t, 30*time.Second, "b to join", func() bool {
		return rec.count(func(d delivery) bool { return d.consumer == "b" }) > 0
	})
	if err := subA.Close(); err != nil {
		t.Fatalf("close a: %v", err)
	}
	aDone := len(rec.snapshot())
	if aDone >= total {
		t.Fatalf("the stream ended before the rebalances (%d of %d delivered)", aDone, total)
	}
	waitFor(t, 60*time.Second, "every message", func() bool { return rec.distinct() == total })

	delivered := map[string]int{} // key → highest seq delivered so far + 1
	dups := 0
	for _, d := range rec.snapshot() {
		switch {
		case d.seq < delivered[d.key]:
			dups++
		case d.seq == delivered[d.key]:
			delivered[d.key]++
		default:
			t.Fatalf("key %s: seq %d delivered (by %s) before seq %d", d.key, d.seq, d.consumer, delivered[d.key])
		}
	}
	t.Logf("%d messages, %d redelivered across two rebalances; a delivered %d before leaving",
		total, dups, aDone)
}

// TestRedeliveryWithoutAck: a member that stops without acking a message does not
// commit it; the next member of the group gets it and everything after it, and
// nothing acked before it again. A nack redelivers to the same member.
func TestRedeliveryWithoutAck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		interval time.Duration
	}{
		{"commit acked offsets on a timer", 0},
		{"commit after every ack", -1},
	}
	brokers := kafkatest.Start(t, 1)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := kafka.Config{Brokers: brokers, CommitInterval: tt.interval, NackBackoff: 10 * time.Millisecond}
			topic := fmt.Sprintf("redeliver-%d", i)
			group := fmt.Sprintf("redeliver-%d", i)
			ensureTopic(t, cfg, topic, 1)
			publishRounds(t, newPublisher(t, cfg), topic, []string{"p"}, 0, 6)

			// First member: acks 0..2, nacks 3 once (redelivered to it), then
			// leaves 3 unacked and stops.
			subA, err := kafka.NewSubscriber(cfg, group, nil)
			if err != nil {
				t.Fatal(err)
			}
			chA, err := subA.Subscribe(t.Context(), topic)
			if err != nil {
				t.Fatal(err)
			}
			var seen []int
			for len(seen) < 5 {
				select {
				case m := <-chA:
					d := toDelivery(t, "a", m)
					seen = append(seen, d.seq)
					switch {
					case d.seq < 3:
						m.Ack()
					case len(seen) == 4:
						m.Nack()
					}
				case <-time.After(15 * time.Second):
					t.Fatalf("first member got only %v", seen)
				}
			}
			if want := []int{0, 1, 2, 3, 3}; fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Fatalf("first member got %v, want %v (a nack redelivers)", seen, want)
			}
			if err := subA.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}

			chB, err := newSubscriber(t, cfg, group).Subscribe(t.Context(), topic)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for len(got) < 3 {
				select {
				case m := <-chB:
					got = append(got, toDelivery(t, "b", m).seq)
					m.Ack()
				case <-time.After(15 * time.Second):
					t.Fatalf("second member got only %v", got)
				}
			}
			if want := []int{3, 4, 5}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("second member got %v, want %v: the unacked message and those after it, and no acked one", got, want)
			}
		})
	}
}

// TestSubscriberStopsWithContext: cancelling the subscription's context closes the
// channel.
func TestSubscriberStopsWithContext(t *testing.T) {
	t.Parallel()
	cfg := kafka.Config{Brokers: kafkatest.Start(t, 1)}
	ensureTopic(t, cfg, "ctx", 1)
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := newSubscriber(t, cfg, "ctx-test").Subscribe(ctx, "ctx")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("message on an empty topic")
		}
	case <-time.After(15 * time.Second):
		t.Fatal(errors.New("channel still open 15s after the context was cancelled"))
	}
}

// TestLargeMessages: MediaMesh's topics take a message of several MiB (an ingest
// item of a 1 MiB feed line, with its envelope), past Kafka's default of about
// 1 MB, and a subscriber receives it whole.
func TestLargeMessages(t *testing.T) {
	t.Parallel()
	cfg := kafka.Config{Brokers: kafkatest.Start(t, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cfg, kafka.Topics()...); err != nil {
		t.Fatal(err)
	}
	// Random bytes, hex-encoded: lz4 cannot shrink them below 1 MB.
	raw := make([]byte, 1<<20)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	payload := []byte(hex.EncodeToString(raw)) // 2 MiB
	msg := message.NewMessage("large", payload)
	msg.Metadata.Set(kafka.PartitionKeyMetadata, "k")
	if err := newPublisher(t, cfg).Publish(kafka.TopicIngestEvents, msg); err != nil {
		t.Fatalf("publish %d bytes: %v", len(payload), err)
	}
	ch, err := newSubscriber(t, cfg, "large-test").Subscribe(ctx, kafka.TopicIngestEvents)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ch:
		got.Ack()
		if !bytes.Equal(got.Payload, payload) {
			t.Fatalf("received %d bytes, want the %d published", len(got.Payload), len(payload))
		}
	case <-ctx.Done():
		t.Fatal("the large message never arrived")
	}
	// Beyond the limit the producer refuses, with an error, before the broker.
	big := message.NewMessage("too-large", make([]byte, kafka.MaxMessageBytes+1))
	if err := newPublisher(t, cfg).Publish(kafka.TopicIngestEvents, big); err == nil {
		t.Error("a message past MaxMessageBytes was published")
	}
}
