package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/events"
)

// appendInterleaved appends n small batches round-robin to the streams and returns
// the appended events in append order with the stream and version the store gave
// them (not their positions) and the last append's result.
func appendInterleaved(t *testing.T, s Store, n int, streams ...string) ([]events.Envelope, events.AppendResult) {
	t.Helper()
	var out []events.Envelope
	var last events.AppendResult
	for i := range n {
		stream := streams[i%len(streams)]
		batch := NewEvents(t, 1+i%3, "mediamesh.test.log.v1")
		last = mustAppend(t, s, stream, events.ExpectAny, batch)
		for j := range batch {
			batch[j].StreamID = stream
			batch[j].Version = last.FirstVersion + int64(j)
		}
		out = append(out, batch...)
	}
	return out, last
}

// assertLogOrder checks that got are the want events, in the same order, with
// strictly increasing positions.
func assertLogOrder(t *testing.T, got, want []events.Envelope) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].EventID != want[i].EventID || got[i].StreamID != want[i].StreamID || got[i].Version != want[i].Version {
			t.Fatalf("event %d = %s %s@%d, want %s %s@%d", i, got[i].EventID, got[i].StreamID, got[i].Version, want[i].EventID, want[i].StreamID, want[i].Version)
		}
		if got[i].Position <= 0 || (i > 0 && got[i].Position <= got[i-1].Position) {
			t.Fatalf("event %d position %d is not above 0 and the previous event's", i, got[i].Position)
		}
	}
}

func testReadAllOrderAndLimit(t *testing.T, s Store) {
	a, b, c := StreamName(t, "loga"), StreamName(t, "logb"), StreamName(t, "logc")
	before := mustHead(t, s)
	want, last := appendInterleaved(t, s, 10, a, b, c)
	waitReadable(t, s, last.Position)

	for _, limit := range []int{1, 2, 7, 1000} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			assertLogOrder(t, readMine(t, s, before, limit, len(want), a, b, c), want)
		})
	}
	page, err := s.ReadAll(testContext(t), before, 3)
	if err != nil {
		t.Fatalf("read all: %v", err)
	}
	if len(page) != 3 {
		t.Fatalf("read all limit 3 with %d events after the checkpoint returned %d", len(want), len(page))
	}
	// Reading after the last event of a stream's own append returns only later events.
	page, err = s.ReadAll(testContext(t), want[3].Position, 1000)
	if err != nil {
		t.Fatalf("read all: %v", err)
	}
	if len(page) == 0 || page[0].Position <= want[3].Position {
		t.Fatalf("read all after %d starts at %v", want[3].Position, page)
	}
	if _, err := s.ReadAll(testContext(t), before, 0); err == nil {
		t.Fatalf("read all with limit 0 succeeded, want an error")
	}
}

func testHeadPosition(t *testing.T, s Store) {
	empty := storeIsEmpty(t, s)
	if h := mustHead(t, s); empty && h != 0 {
		t.Fatalf("head position of an empty store = %d, want 0", h)
	}
	stream := StreamName(t, "head")
	r1 := mustAppend(t, s, stream, events.ExpectNoStream, NewEvents(t, 2, "mediamesh.test.head.v1"))
	waitReadable(t, s, r1.Position)
	r2 := mustAppend(t, s, stream, 2, NewEvents(t, 1, "mediamesh.test.head.v1"))
	waitReadable(t, s, r2.Position)
	if !empty {
		return // others write to this store: only "eventually at least" holds
	}
	if h := mustHead(t, s); h != r2.Position {
		t.Fatalf("head position = %d, want the last event's %d", h, r2.Position)
	}
}

// collector gathers what a running subscription delivers and checks the
// subscription's promises on every batch.
type collector struct {
	batchSize int
	mu        sync.Mutex
	all       []events.Envelope
	seen      map[string]bool
	problems  []string
	calls     int
	changed   chan struct{}
}

func (c *collector) handle(_ context.Context, batch []events.Envelope) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if len(batch) == 0 || len(batch) > c.batchSize {
		c.problems = append(c.problems, fmt.Sprintf("batch of %d events, want 1..%d", len(batch), c.batchSize))
	}
	for _, e := range batch {
		if c.seen[e.EventID] {
			c.problems = append(c.problems, fmt.Sprintf("event %s delivered twice", e.EventID))
		}
		c.seen[e.EventID] = true
		if n := len(c.all); n > 0 && e.Position <= c.all[n-1].Position {
			c.problems = append(c.problems, fmt.Sprintf("position %d delivered after %d", e.Position, c.all[n-1].Position))
		}
		c.all = append(c.all, e)
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return nil
}

// mine returns the delivered events of the given streams, in delivery order.
func (c *collector) mine(streams ...string) []events.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := map[string]bool{}
	for _, s := range streams {
		set[s] = true
	}
	var out []events.Envelope
	for _, e := range c.all {
		if set[e.StreamID] {
			out = append(out, e)
		}
	}
	return out
}

// waitMine waits until n events of the streams have been delivered.
func (c *collector) waitMine(t *testing.T, n int, streams ...string) []events.Envelope {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		if got := c.mine(streams...); len(got) >= n {
			return got
		}
		select {
		case <-c.changed:
		case <-timer.C:
			t.Fatalf("subscription delivered %d of %d expected events within %v", len(c.mine(streams...)), n, waitTimeout)
		}
	}
}

func (c *collector) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		t.Error(p)
	}
}

// subscribe runs s.Subscribe in the background; stop cancels it and returns what
// Subscribe returned.
func subscribe(t *testing.T, s Store, after int64, batchSize int) (c *collector, stop func() error) {
	t.Helper()
	c = &collector{batchSize: batchSize, seen: map[string]bool{}, changed: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- s.Subscribe(ctx, after, batchSize, c.handle) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(waitTimeout):
				err = fmt.Errorf("subscribe did not return within %v of its context being cancelled", waitTimeout)
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return c, stop
}

func stopCancelled(t *testing.T, stop func() error) {
	t.Helper()
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribe returned %v after its context was cancelled, want context.Canceled", err)
	}
}

func testSubscribeFromZero(t *testing.T, s Store) {
	a, b := StreamName(t, "suba"), StreamName(t, "subb")
	want, _ := appendInterleaved(t, s, 4, a, b)
	c, stop := subscribe(t, s, 0, 3)
	assertLogOrder(t, c.waitMine(t, len(want), a, b), want)
	stopCancelled(t, stop)
	c.check(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.all) == 0 || c.all[0].Position <= 0 {
		t.Fatalf("subscription from 0 delivered %d events, first position not above 0", len(c.all))
	}
}

func testSubscribeFromCheckpoint(t *testing.T, s Store) {
	a, b := StreamName(t, "cpa"), StreamName(t, "cpb")
	before := mustHead(t, s)
	want, last := appendInterleaved(t, s, 4, a, b) // 1+2+3+1 = 7 events
	waitReadable(t, s, last.Position)
	logged := readMine(t, s, before, 100, len(want), a, b)
	assertLogOrder(t, logged, want)
	checkpoint := logged[2].Position // in the middle of the second append
	c, stop := subscribe(t, s, checkpoint, 2)
	assertLogOrder(t, c.waitMine(t, len(want)-3, a, b), want[3:])

	// Events appended while it runs follow.
	more, _ := appendInterleaved(t, s, 2, a, b)
	assertLogOrder(t, c.waitMine(t, len(want)-3+len(more), a, b), append(want[3:], more...))
	stopCancelled(t, stop)
	c.check(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.all {
		if e.Position <= checkpoint {
			t.Fatalf("subscription after %d delivered position %d", checkpoint, e.Position)
		}
	}
}

func testSubscribeLive(t *testing.T, s Store) {
	a := StreamName(t, "live")
	before := mustHead(t, s)
	c, stop := subscribe(t, s, before, 3)
	// A first event proves the subscription is running (caught up and waiting);
	// what follows must reach it live.
	sentinel, _ := appendInterleaved(t, s, 1, a)
	c.waitMine(t, 1, a)

	batch := NewEvents(t, 7, "mediamesh.test.live.v1") // one append, larger than the batch size
	res := mustAppend(t, s, a, 1, batch)
	want := append([]events.Envelope{}, sentinel...)
	for i := range batch {
		batch[i].StreamID, batch[i].Version = a, res.FirstVersion+int64(i)
		want = append(want, batch[i])
	}
	single, _ := appendInterleaved(t, s, 1, a)
	want = append(want, single...)
	assertLogOrder(t, c.waitMine(t, len(want), a), want)
	stopCancelled(t, stop)
	c.check(t) // includes: no batch above 3 events
}

func testSubscribeHandlerError(t *testing.T, s Store) {
	stream := StreamName(t, "boom")
	before := mustHead(t, s)
	mustAppend(t, s, stream, events.ExpectNoStream, NewEvents(t, 3, "mediamesh.test.boom.v1"))
	errBoom := errors.New("boom")
	calls := 0
	ctx, cancel := context.WithTimeout(testContext(t), waitTimeout)
	defer cancel()
	err := s.Subscribe(ctx, before, 10, func(context.Context, []events.Envelope) error {
		calls++
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("subscribe returned %v, want the handler's error", err)
	}
	if calls != 1 {
		t.Fatalf("handler called %d times, want once: the subscription must stop at its error", calls)
	}
}

func testSubscribeCancel(t *testing.T, s Store) {
	// Cancelled while waiting for events that never come.
	c, stop := subscribe(t, s, mustHead(t, s), 5)
	stopCancelled(t, stop)
	c.check(t)

	// Invalid batch sizes are refused without blocking.
	ctx, cancel := context.WithTimeout(testContext(t), waitTimeout)
	defer cancel()
	err := s.Subscribe(ctx, 0, 0, func(context.Context, []events.Envelope) error { return nil })
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("subscribe with batch size 0 returned %v, want an immediate error", err)
	}
}
