package relay_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
	"github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/relay"
)

var _ relay.Log = (*postgres.Store)(nil)

// env is one test's world: a fresh database with the event store, a kfake cluster
// with content.events, and a Kafka publisher.
type env struct {
	appended atomic.Int64 // events appended by the test
	db       *pgxpool.Pool
	store    *postgres.Store
	codec    *events.Codec
	kafka    kafka.Config
	pub      message.Publisher
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db, _ := pgtest.NewDB(t)
	cfg := kafka.Config{Brokers: kafkatest.Start(t, 1)}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cfg, kafka.Topics()...); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	pub, err := kafka.NewPublisher(cfg, nil)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return &env{db: db, store: postgres.New(db), codec: events.NewCodec(), kafka: cfg, pub: pub}
}

// countingPublisher counts acknowledged messages and calls after (if set) with the
// count after each one.
type countingPublisher struct {
	relay.Publisher
	n     atomic.Int64
	after func(n int64)
}

func (p *countingPublisher) Publish(topic string, msgs ...*message.Message) error {
	if err := p.Publisher.Publish(topic, msgs...); err != nil {
		return err
	}
	n := p.n.Add(int64(len(msgs)))
	if p.after != nil {
		p.after(n)
	}
	return nil
}

func (e *env) newRelay(t *testing.T, pub relay.Publisher, cfg relay.Config) *relay.Relay {
	t.Helper()
	r, err := relay.New(e.db, e.store, pub, e.codec, cfg)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	return r
}

// start runs r until the returned stop is called (or the test ends); stop returns
// Run's error.
func start(t *testing.T, r *relay.Relay) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				err = errors.New("relay did not stop within 15s")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func (e *env) appendEvent(t *testing.T, stream string, ev events.Event, traceParent string) {
	t.Helper()
	typ, data, err := e.codec.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.store.Append(t.Context(), stream, events.ExpectAny, []events.Envelope{{
		Type: typ, Data: data, Metadata: events.Metadata{TraceParent: traceParent},
	}})
	if err != nil {
		t.Errorf("append to %s: %v", stream, err)
		return
	}
	e.appended.Add(1)
}

// appendCatalog appends rounds events for each of programs programs: a program's
// creation, then episodes, each followed by the event on the episode's pointer stream
// that belongs to the same program. Programs are appended concurrently (each one's
// events in order), so the global log interleaves them.
func (e *env) appendCatalog(t *testing.T, prefix string, programs, rounds int) {
	t.Helper()
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const writers = 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for p := w; p < programs; p += writers {
				pid := fmt.Sprintf("%s-%03d", prefix, p)
				for r := range rounds {
					switch {
					case r == 0:
						e.appendEvent(t, events.ProgramStreamID(pid), events.ProgramCreated{ProgramID: pid, Title: "t"}, tp)
					case r%2 == 1:
						eid := fmt.Sprintf("%s-e%d", pid, r)
						e.appendEvent(t, events.ProgramStreamID(pid), events.EpisodeAdded{ProgramID: pid, EpisodeID: eid, Number: r}, "")
					default:
						eid := fmt.Sprintf("%s-e%d", pid, r-1)
						e.appendEvent(t, events.EpisodeStreamID(eid), events.EpisodeRegistered{ProgramID: pid, EpisodeID: eid}, tp)
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// all returns every event the test appended, from the store's global log. The log
// may trail the appends while any older transaction on the server is open (the
// readable bound is cluster-wide, and other tests share the server), so it waits
// until all of them are readable.
func (e *env) all(t *testing.T) []events.Envelope {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out []events.Envelope
		var after int64
		for {
			evs, err := e.store.ReadAll(t.Context(), after, 1000)
			if err != nil {
				t.Fatalf("ReadAll: %v", err)
			}
			if len(evs) == 0 {
				break
			}
			out = append(out, evs...)
			after = evs[len(evs)-1].Position
		}
		if int64(len(out)) == e.appended.Load() {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("the global log shows %d of the %d appended events after 30s", len(out), e.appended.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitCaughtUp waits until r is active and its saved checkpoint reached the last
// event the test appended, and returns its lag and the events appended.
func waitCaughtUp(t *testing.T, e *env, r *relay.Relay, timeout time.Duration) (relay.Lag, []events.Envelope) {
	t.Helper()
	want := e.all(t)
	last := want[len(want)-1].Position
	deadline := time.Now().Add(timeout)
	for {
		lag, err := r.Lag(t.Context())
		if err != nil {
			t.Fatalf("Lag: %v", err)
		}
		if lag.Active && lag.Checkpoint == last && lag.Unpublished == 0 && lag.Head == last {
			return lag, want
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay not caught up after %s: %+v", timeout, lag)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// received is one message as a consumer of content.events saw it.
type received struct {
	env       events.Envelope
	key       string
	partition int32
	meta      message.Metadata
}

// consumeAll reads content.events in a fresh consumer group until it has seen
// every event of want (duplicates allowed) and returns what arrived, in order.
func consumeAll(t *testing.T, e *env, want int) []received {
	t.Helper()
	sub, err := kafka.NewSubscriber(e.kafka, "relay-test-check", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := sub.Subscribe(ctx, kafka.TopicContentEvents)
	if err != nil {
		t.Fatal(err)
	}
	var got []received
	distinct := map[string]bool{}
	timeout := time.After(30 * time.Second)
	for len(distinct) < want {
		select {
		case m := <-ch:
			env, err := relay.DecodeMessage(m)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			key, _ := wmkafka.MessageKeyFromCtx(m.Context())
			p, _ := wmkafka.MessagePartitionFromCtx(m.Context())
			got = append(got, received{env: env, key: string(key), partition: p, meta: m.Metadata})
			distinct[env.EventID] = true
			m.Ack()
		case <-timeout:
			t.Fatalf("consumed %d distinct events of %d", len(distinct), want)
		}
	}
	return got
}

// check asserts that every event of want arrived with the right key and metadata,
// and that per key, an event arrived only after every earlier event of that key
// (redeliveries of earlier ones aside). It returns the number of duplicates.
func check(t *testing.T, e *env, want []events.Envelope, got []received) int {
	t.Helper()
	wantKey := map[string]string{}
	perKey := map[string][]int64{} // key → positions in order
	for _, w := range want {
		k := relay.PartitionKey(e.codec, w)
		wantKey[w.EventID] = k
		perKey[k] = append(perKey[k], w.Position)
	}
	next := map[string]int{}
	seen := map[string]bool{}
	partitionOf := map[string]int32{}
	dups := 0
	for _, g := range got {
		k, ok := wantKey[g.env.EventID]
		if !ok {
			t.Fatalf("unexpected event %s", g.env.EventID)
		}
		if g.key != k {
			t.Fatalf("event %s (%s on %s) has key %q, want %q", g.env.EventID, g.env.Type, g.env.StreamID, g.key, k)
		}
		if p, ok := partitionOf[k]; ok && p != g.partition {
			t.Fatalf("key %s on partitions %d and %d", k, p, g.partition)
		}
		partitionOf[k] = g.partition
		if g.meta.Get(relay.MetaEventID) != g.env.EventID || g.meta.Get(relay.MetaPosition) != strconv.FormatInt(g.env.Position, 10) ||
			g.meta.Get(relay.MetaStreamID) != g.env.StreamID || g.meta.Get(relay.MetaEventType) != g.env.Type ||
			g.meta.Get(relay.MetaStreamVersion) != strconv.FormatInt(g.env.Version, 10) ||
			g.meta.Get(relay.MetaTraceParent) != g.env.Metadata.TraceParent {
			t.Fatalf("event %s: metadata %v does not match the envelope %+v", g.env.EventID, g.meta, g.env)
		}
		if seen[g.env.EventID] {
			dups++
			continue
		}
		seen[g.env.EventID] = true
		if exp := perKey[k][next[k]]; g.env.Position != exp {
			t.Fatalf("key %s: position %d arrived before %d", k, g.env.Position, exp)
		}
		next[k]++
	}
	if len(seen) != len(want) {
		t.Fatalf("%d of %d events arrived", len(seen), len(want))
	}
	return dups
}

// TestRelayEndToEnd: events of many programs, appended before and while the relay
// runs, all arrive on content.events keyed by program id, in per-program order, with
// the envelope's headers; the checkpoint reaches the head.
func TestRelayEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.appendCatalog(t, "prog", 30, 40)
	// An event whose type this binary does not know is keyed by its stream.
	_, err := e.store.Append(t.Context(), "asset-a1", events.ExpectAny, []events.Envelope{{Type: "mediamesh.asset.future.v9", Data: []byte(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}
	e.appended.Add(1)
	backlog := len(e.all(t))

	pub := &countingPublisher{Publisher: e.pub}
	r := e.newRelay(t, pub, relay.Config{})
	// Before it runs, the relay's lag is the whole log; counting stops at the limit.
	for _, tt := range []struct {
		limit   int
		want    int
		capped  bool
		relayed *relay.Relay
	}{
		{limit: 0, want: backlog, relayed: r},
		{limit: 100, want: 100, capped: true},
	} {
		rr := tt.relayed
		if rr == nil {
			rr = e.newRelay(t, pub, relay.Config{LagCountLimit: tt.limit})
		}
		lag, err := rr.Lag(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if lag.Active || lag.Checkpoint != 0 || lag.Unpublished != tt.want || lag.Capped != tt.capped {
			t.Errorf("lag before the first run (limit %d): %+v, want %d unpublished, capped %v", tt.limit, lag, tt.want, tt.capped)
		}
	}

	began := time.Now()
	start(t, r)
	waitCaughtUp(t, e, r, 60*time.Second)
	elapsed := time.Since(began)
	t.Logf("relayed a backlog of %d events from the PostgreSQL store in %s (checkpoint saved): %.0f events/s",
		backlog, elapsed.Round(time.Millisecond), float64(backlog)/elapsed.Seconds())

	e.appendCatalog(t, "live", 5, 4) // appended while the relay runs
	lag, want := waitCaughtUp(t, e, r, 30*time.Second)
	if got := pub.n.Load(); got != int64(len(want)) {
		t.Errorf("published %d messages for %d events", got, len(want))
	}
	if lag.Published != uint64(len(want)) || lag.InFlight != 0 || lag.Capped {
		t.Errorf("lag %+v after relaying %d events", lag, len(want))
	}
	if cp, err := relay.ReadCheckpoint(t.Context(), e.db, relay.DefaultName); err != nil || cp != want[len(want)-1].Position {
		t.Errorf("saved checkpoint %d (%v), want %d", cp, err, want[len(want)-1].Position)
	}
	if dups := check(t, e, want, consumeAll(t, e, len(want))); dups != 0 {
		t.Errorf("%d duplicates without any restart", dups)
	}
}

// TestRelayRestartLosesNothing: a relay that stops mid-stream — cancelled, or with its
// database session killed under it — resumes from its checkpoint: every event
// arrives, in per-program order; duplicates are allowed and reported.
func TestRelayRestartLosesNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// interrupt is called once the first relay published 300 events; it returns
		// the relay that finishes the job.
		interrupt func(t *testing.T, e *env, first *relay.Relay, stopFirst func() error) *relay.Relay
	}{
		{
			name: "context cancelled, then a new relay",
			interrupt: func(t *testing.T, e *env, first *relay.Relay, stopFirst func() error) *relay.Relay {
				if err := stopFirst(); !errors.Is(err, context.Canceled) {
					t.Errorf("Run = %v, want context.Canceled", err)
				}
				if first.Status().Active {
					t.Error("stopped relay still active")
				}
				second := e.newRelay(t, e.pub, relay.Config{})
				start(t, second)
				return second
			},
		},
		{
			name: "session killed: the relay loses its lock, stops and resumes itself",
			interrupt: func(t *testing.T, e *env, first *relay.Relay, _ func() error) *relay.Relay {
				var n int
				err := e.db.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
					WHERE locktype = 'advisory' AND granted AND objsubid = 2
					AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
				if err != nil || n != 1 {
					t.Fatalf("terminated %d lock sessions (%v), want 1", n, err)
				}
				return first
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.appendCatalog(t, "prog", 30, 40)
			want := e.all(t)

			reached := make(chan struct{})
			var once sync.Once
			pub := &countingPublisher{Publisher: e.pub, after: func(n int64) {
				if n >= 300 {
					once.Do(func() { close(reached) })
				}
			}}
			// A long checkpoint interval, so that an interruption republishes a lot.
			cfg := relay.Config{CheckpointInterval: 100 * time.Millisecond, Workers: 4}
			first := e.newRelay(t, pub, cfg)
			stopFirst := start(t, first)
			select {
			case <-reached:
			case <-time.After(30 * time.Second):
				t.Fatal("first relay did not publish 300 events")
			}
			final := tt.interrupt(t, e, first, stopFirst)
			waitCaughtUp(t, e, final, 60*time.Second)

			got := consumeAll(t, e, len(want))
			dups := check(t, e, want, got)
			st := final.Status()
			t.Logf("%d events, %d messages consumed, %d duplicates; finishing relay: runs=%d last error=%v",
				len(want), len(got), dups, st.Runs, st.LastError)
		})
	}
}

// TestStandbyRelayTakesOver: a second relay with the same name publishes nothing
// while the first one holds the lock, and takes over when the first one stops.
func TestStandbyRelayTakesOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.appendCatalog(t, "a", 10, 10)

	pubA := &countingPublisher{Publisher: e.pub}
	a := e.newRelay(t, pubA, relay.Config{})
	stopA := start(t, a)
	waitCaughtUp(t, e, a, 30*time.Second)

	pubB := &countingPublisher{Publisher: e.pub}
	b := e.newRelay(t, pubB, relay.Config{})
	start(t, b)
	e.appendCatalog(t, "b", 10, 10) // while both run
	waitCaughtUp(t, e, a, 30*time.Second)
	if n := pubB.n.Load(); n != 0 || b.Status().Active {
		t.Fatalf("standby published %d events (active=%v) while the first relay held the lock", n, b.Status().Active)
	}
	lag, err := b.Lag(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if lag.Active || lag.Unpublished != 0 || lag.Checkpoint != lag.Head {
		t.Fatalf("standby's view of the lag: %+v", lag)
	}

	if err := stopA(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	e.appendCatalog(t, "c", 10, 10)
	_, want := waitCaughtUp(t, e, b, 30*time.Second)
	dups := check(t, e, want, consumeAll(t, e, len(want)))
	if dups != 0 {
		t.Errorf("%d duplicates after a clean hand-over", dups)
	}
	if got := pubA.n.Load() + pubB.n.Load(); got != int64(len(want)) {
		t.Errorf("published %d messages for %d events", got, len(want))
	}
	if pubB.n.Load() == 0 {
		t.Error("standby never published")
	}
}

// TestPublishFailureIsRetried: when publishing fails, the relay publishes nothing
// more in that run (no key gets ahead of a failed event), keeps its checkpoint behind
// the failed event, and a later run delivers everything.
func TestPublishFailureIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.appendCatalog(t, "prog", 5, 20)

	var failures atomic.Int64
	pub := &flakyPublisher{Publisher: e.pub, failAt: 50, failures: &failures}
	r := e.newRelay(t, pub, relay.Config{Workers: 2, MaxBackoff: 100 * time.Millisecond})
	start(t, r)
	_, want := waitCaughtUp(t, e, r, 30*time.Second)
	st := r.Status()
	if failures.Load() != 1 || st.Runs != 2 || st.LastError == nil {
		t.Fatalf("after one publish failure: failures=%d runs=%d last error=%v", failures.Load(), st.Runs, st.LastError)
	}
	dups := check(t, e, want, consumeAll(t, e, len(want)))
	t.Logf("one failed publish: %d duplicates, error %q", dups, st.LastError)
}

// flakyPublisher fails its failAt-th call once.
type flakyPublisher struct {
	relay.Publisher
	calls    atomic.Int64
	failAt   int64
	failures *atomic.Int64
}

func (p *flakyPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.calls.Add(1) == p.failAt {
		p.failures.Add(1)
		return errors.New("broker unavailable")
	}
	return p.Publisher.Publish(topic, msgs...)
}

func TestNewRejectsBadInput(t *testing.T) {
	t.Parallel()
	if _, err := relay.New(nil, nil, nil, nil, relay.Config{Workers: -1, BatchSize: 10, MaxInFlight: 5}); err == nil {
		t.Fatal("New accepted nil dependencies and a bad config")
	} else {
		for _, want := range []string{"nil database pool", "nil event log", "nil publisher", "nil codec", "workers -1", "batch size 10 above max in flight 5"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
	}
	if relay.MetaPartitionKey != kafka.PartitionKeyMetadata {
		t.Fatalf("relay.MetaPartitionKey %q != kafka.PartitionKeyMetadata %q", relay.MetaPartitionKey, kafka.PartitionKeyMetadata)
	}
}
