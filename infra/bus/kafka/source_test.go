package kafka_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
	"github.com/mediamesh/mediamesh/projections/relay"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

var _ runtime.Stream = (*kafka.Source)(nil)

// sourceEvents returns n envelopes over keys programs, positions 1..n, versions per
// program.
func sourceEvents(from, n, keys int) []events.Envelope {
	out := make([]events.Envelope, 0, n)
	for i := from; i < from+n; i++ {
		p := fmt.Sprintf("0190d5a0-0000-7000-8000-%012d", i%keys)
		out = append(out, events.Envelope{EventID: fmt.Sprintf("0190d5a0-0000-7000-9000-%012d", i), Type: events.TypeProgramUpdated,
			StreamID: events.ProgramStreamID(p), Version: int64(i/keys + 1), Position: int64(i + 1), OccurredAt: time.Unix(int64(i), 0).UTC(),
			Data: []byte(`{"program_id":"` + p + `"}`)})
	}
	return out
}

// sourcePublish publishes evs as the relay does (relay.NewMessage through this
// package's publisher), keyed by program.
func sourcePublish(t *testing.T, cfg kafka.Config, topic string, evs []events.Envelope) {
	t.Helper()
	pub, err := kafka.NewPublisher(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for _, e := range evs {
		m, err := relay.NewMessage(e, e.StreamID[len("program-"):])
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(topic, m); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

// sourceCollector records accepted batches.
type sourceCollector struct {
	mu      sync.Mutex
	batches [][]events.Envelope
	n       int
	refuse  map[int64]bool // refuse once a batch holding one of these positions
	refused int
	changed chan struct{}
}

func newSourceCollector() *sourceCollector {
	return &sourceCollector{refuse: map[int64]bool{}, changed: make(chan struct{}, 1)}
}

func (c *sourceCollector) handle(_ context.Context, batch []events.Envelope) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range batch {
		if c.refuse[e.Position] {
			delete(c.refuse, e.Position)
			c.refused++
			return fmt.Errorf("refused batch with position %d", e.Position)
		}
	}
	c.batches = append(c.batches, slices.Clone(batch))
	c.n += len(batch)
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return nil
}

func (c *sourceCollector) waitCount(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		got := c.n
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("received %d events, want %d", got, n)
		}
	}
}

func (c *sourceCollector) all() []events.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []events.Envelope
	for _, b := range c.batches {
		out = append(out, b...)
	}
	return out
}

func sourceConsume(t *testing.T, src *kafka.Source, name string, c *sourceCollector) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Consume(ctx, name, c.handle) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("Consume did not return within 30 s of cancellation")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestSource: batches are bounded, each partition's events come in order, every
// event is accepted exactly once even though a batch is refused once, offsets are
// committed (a restart gets only what is new), a skipped foreign message does not
// stop anything, and another name is another consumer group.
func TestSource(t *testing.T) {
	t.Parallel()
	cfg := kafka.Config{Brokers: kafkatest.Start(t, 1)}
	const topic = "source.test"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cfg, kafka.Topic{Name: topic, Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	evs := sourceEvents(0, 120, 12)
	sourcePublish(t, cfg, topic, evs)
	// A message nobody relayed.
	sc, _ := kafka.NewSaramaConfig(cfg)
	prod, err := sarama.NewSyncProducer(cfg.Brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("x"), Value: sarama.StringEncoder("not json")}); err != nil {
		t.Fatal(err)
	}
	prod.Close()

	quietLog := slog.New(slog.NewTextHandler(io.Discard, nil))
	src, err := kafka.NewSource(cfg, kafka.SourceOptions{Topic: topic, BatchSize: 16, BatchWait: 10 * time.Millisecond, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	c := newSourceCollector()
	c.refuse[evs[50].Position] = true
	stop := sourceConsume(t, src, "catalog.v1", c)
	c.waitCount(t, len(evs))
	stop()

	got := c.all()
	if len(got) != len(evs) {
		t.Fatalf("accepted %d events, want each of %d once", len(got), len(evs))
	}
	if c.refused != 1 {
		t.Fatalf("refused %d batches, want 1", c.refused)
	}
	for _, b := range c.batches {
		if len(b) > 16 {
			t.Fatalf("batch of %d, want at most 16", len(b))
		}
	}
	last := map[string]int64{}
	seen := map[int64]bool{}
	for _, e := range got {
		if seen[e.Position] {
			t.Fatalf("position %d accepted twice", e.Position)
		}
		seen[e.Position] = true
		if e.Position <= last[e.StreamID] {
			t.Fatalf("%s: position %d after %d", e.StreamID, e.Position, last[e.StreamID])
		}
		last[e.StreamID] = e.Position
	}

	// Restart: only what was published since.
	more := sourceEvents(120, 12, 12)
	sourcePublish(t, cfg, topic, more)
	c2 := newSourceCollector()
	sourceConsume(t, src, "catalog.v1", c2)
	c2.waitCount(t, len(more))
	// Another consumer group reads everything from the start.
	c3 := newSourceCollector()
	sourceConsume(t, src, "editorial.v1", c3)
	c3.waitCount(t, len(evs)+len(more))
	if got := c2.all(); len(got) != len(more) {
		t.Fatalf("after a restart the group got %d events, want the %d new ones", len(got), len(more))
	}
}

func TestSourceRejectsBadNames(t *testing.T) {
	t.Parallel()
	src, err := kafka.NewSource(kafka.Config{Brokers: []string{"127.0.0.1:1"}}, kafka.SourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Consume(context.Background(), "bad name!", func(context.Context, []events.Envelope) error { return nil }); err == nil {
		t.Fatal("Consume accepted a bad consumer name")
	}
	if _, err := kafka.NewSource(kafka.Config{}, kafka.SourceOptions{}); err == nil {
		t.Fatal("NewSource accepted a config without brokers")
	}
}
