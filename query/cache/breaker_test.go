package cache_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/query/cache"
)

// flaky is a Remote whose MGet fails while down, counting calls.
type flaky struct {
	mu    sync.Mutex
	down  bool
	calls int
	block bool
}

func (f *flaky) MGet(ctx context.Context, keys ...string) ([][]byte, error) {
	f.mu.Lock()
	f.calls++
	down, block := f.down, f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if down {
		return nil, errors.New("connection refused")
	}
	return make([][]byte, len(keys)), nil
}

func (f *flaky) Set(context.Context, string, []byte, time.Duration) error { return nil }
func (f *flaky) RevRange(context.Context, string, int, int) ([]string, int, error) {
	return nil, 0, nil
}
func (f *flaky) Subscribe(ctx context.Context, _ string, ready func(), _ func([]byte)) error {
	ready()
	<-ctx.Done()
	return nil
}

func (f *flaky) set(down, block bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down, f.block = down, block
}

func (f *flaky) n() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func TestBreaker(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r := &flaky{down: true}
	b := cache.NewBreaker(r, cache.BreakerOptions{Failures: 3, Cooldown: time.Second, Timeout: 20 * time.Millisecond, Now: clock})
	ctx := context.Background()
	for i := range 3 {
		if _, err := b.MGet(ctx, "k"); err == nil || errors.Is(err, cache.ErrBreakerOpen) {
			t.Fatalf("call %d: %v, want Redis's own error", i, err)
		}
	}
	if !b.Open() {
		t.Fatal("three failures did not open the breaker")
	}
	for range 10 {
		if _, err := b.MGet(ctx, "k"); !errors.Is(err, cache.ErrBreakerOpen) {
			t.Fatalf("open breaker: %v", err)
		}
	}
	if r.n() != 3 {
		t.Fatalf("%d calls reached Redis, want 3", r.n())
	}
	advance(time.Second)
	if _, err := b.MGet(ctx, "k"); err == nil { // the probe, still failing
		t.Fatal("probe succeeded against a down Redis")
	}
	if !b.Open() || r.n() != 4 {
		t.Fatalf("after a failed probe: open %v, %d calls", b.Open(), r.n())
	}
	advance(time.Second)
	r.set(false, false)
	if _, err := b.MGet(ctx, "k"); err != nil {
		t.Fatalf("probe against a healthy Redis: %v", err)
	}
	if b.Open() {
		t.Fatal("a successful probe did not close the breaker")
	}
	// A slow Redis is a failure (the timeout); a caller's own cancellation is not.
	r.set(false, true)
	for range 3 {
		if _, err := b.MGet(ctx, "k"); err == nil {
			t.Fatal("a blocked call succeeded")
		}
	}
	if !b.Open() {
		t.Fatal("timeouts did not open the breaker")
	}
	advance(time.Second)
	r.set(false, false)
	if _, err := b.MGet(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	r.set(false, true)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for range 5 {
		_, _ = b.MGet(cctx, "k")
	}
	if b.Open() {
		t.Error("cancelled callers opened the breaker")
	}
}

// TestBreakerReportsState: OnStateChange sees closed at start, then every change:
// open after the failures, half-open for each probe, open again after a failed
// probe, closed after a good one.
func TestBreakerReportsState(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var states []cache.BreakerState
	r := &flaky{down: true}
	b := cache.NewBreaker(r, cache.BreakerOptions{Failures: 2, Cooldown: time.Second, Timeout: 20 * time.Millisecond, Now: clock,
		OnStateChange: func(s cache.BreakerState) { states = append(states, s) }})
	ctx := context.Background()
	for range 4 { // two failures open it; two calls are refused
		_, _ = b.MGet(ctx, "k")
	}
	advance(time.Second)
	_, _ = b.MGet(ctx, "k") // a failed probe
	advance(time.Second)
	r.set(false, false)
	if _, err := b.MGet(ctx, "k"); err != nil { // a good probe
		t.Fatal(err)
	}
	_, _ = b.MGet(ctx, "k")
	want := []cache.BreakerState{cache.BreakerClosed, cache.BreakerOpen, cache.BreakerHalfOpen, cache.BreakerOpen,
		cache.BreakerHalfOpen, cache.BreakerClosed}
	if !slices.Equal(states, want) {
		t.Errorf("states %v, want %v", states, want)
	}
}
