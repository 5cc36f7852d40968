package ratelimit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mediamesh/mediamesh/infra/ratelimit"
)

// RedisStartHint is the command that starts this machine's Redis: a core test
// server, so its tests fail (never skip) without it.
const RedisStartHint = `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log`

func redisClient(t *testing.T) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at 127.0.0.1:6379 is not reachable (%v); start it with:\n  %s", err, RedisStartHint)
	}
	return c
}

// uniquePrefix keeps tests (and repeated runs) from sharing Redis keys.
func uniquePrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "test:" + t.Name() + ":" + hex.EncodeToString(b) + ":"
}

func newLimiter(t *testing.T, c redis.UniversalClient, o ratelimit.Options) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(c, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// clock is a settable clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestRedisLimitIsSharedByInstances(t *testing.T) {
	t.Parallel()
	prefix := uniquePrefix(t)
	a := newLimiter(t, redisClient(t), ratelimit.Options{Prefix: prefix})
	b := newLimiter(t, redisClient(t), ratelimit.Options{Prefix: prefix})
	limit := ratelimit.PerMinute(6, 6)
	ctx := context.Background()
	for i := range 6 {
		l := a
		if i%2 == 1 {
			l = b
		}
		d := l.Allow(ctx, "auth:192.0.2.1", limit)
		if !d.Allowed || d.Local || d.Remaining != 5-i || d.RetryAfter != 0 {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	for _, l := range []*ratelimit.Limiter{a, b} {
		d := l.Allow(ctx, "auth:192.0.2.1", limit)
		if d.Allowed || d.Local || d.Remaining != 0 {
			t.Fatalf("over the limit: %+v", d)
		}
		// One request's allowance comes back after 10 s (6 per minute).
		if d.RetryAfter < 9*time.Second || d.RetryAfter > 10*time.Second || d.ResetAfter < 59*time.Second {
			t.Fatalf("retry after %v, reset after %v", d.RetryAfter, d.ResetAfter)
		}
	}
	// Other keys are not affected.
	if d := a.Allow(ctx, "auth:192.0.2.2", limit); !d.Allowed {
		t.Fatalf("another client: %+v", d)
	}
	if a.Degraded() || b.Degraded() {
		t.Fatal("degraded with Redis up")
	}
}

func TestRedisDownFallsBackToLocalLimits(t *testing.T) {
	t.Parallel()
	// A port nothing listens on: connections are refused at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	l := newLimiter(t, c, ratelimit.Options{Prefix: uniquePrefix(t)})
	limit := ratelimit.PerMinute(60, 3)
	for i := range 3 {
		if d := l.Allow(context.Background(), "k", limit); !d.Allowed || !d.Local {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	d := l.Allow(context.Background(), "k", limit)
	if d.Allowed || !d.Local || d.RetryAfter <= 0 || d.RetryAfter > time.Second {
		t.Fatalf("over the local limit: %+v", d)
	}
	if !l.Degraded() {
		t.Fatal("not degraded with Redis down")
	}
}

// flakyDialer fails (or hangs until the deadline) while down is set.
type flakyDialer struct {
	down  atomic.Bool
	hang  atomic.Bool
	dials atomic.Int64
}

func (f *flakyDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.dials.Add(1)
	if f.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.down.Load() {
		return nil, errors.New("dial: redis is down (test)")
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func TestBreakerSkipsRedisDuringCooldownAndRecovers(t *testing.T) {
	t.Parallel()
	redisClient(t) // fail early, with the hint, when Redis is not running
	f := &flakyDialer{}
	f.down.Store(true)
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}, Dialer: f.dial, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	clk := newClock()
	l := newLimiter(t, c, ratelimit.Options{Prefix: uniquePrefix(t), Cooldown: 5 * time.Second, Now: clk.now})
	limit := ratelimit.PerMinute(600, 100)
	ctx := context.Background()

	if d := l.Allow(ctx, "k", limit); !d.Local {
		t.Fatalf("redis down: %+v", d)
	}
	dials := f.dials.Load()
	for range 20 {
		if d := l.Allow(ctx, "k", limit); !d.Local {
			t.Fatalf("during cooldown: %+v", d)
		}
	}
	if n := f.dials.Load() - dials; n != 0 {
		t.Fatalf("Redis was tried %d times during the cooldown", n)
	}
	// Back up, but the cooldown has not passed: still local.
	f.down.Store(false)
	if d := l.Allow(ctx, "k", limit); !d.Local {
		t.Fatalf("before the cooldown ends: %+v", d)
	}
	clk.advance(5 * time.Second)
	if d := l.Allow(ctx, "k", limit); d.Local || !d.Allowed {
		t.Fatalf("after the cooldown: %+v", d)
	}
	if l.Degraded() {
		t.Fatal("still degraded after a successful probe")
	}
}

func TestHungRedisCostsOneTimeoutPerCooldown(t *testing.T) {
	t.Parallel()
	f := &flakyDialer{}
	f.hang.Store(true)
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}, Dialer: f.dial, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	// A long timeout makes "no request waits" a clear line even on a loaded CI
	// machine: a decision that waited for Redis takes the whole second, one that did
	// not takes microseconds (a 40 ms bound on 50 decisions here was at the mercy
	// of the scheduler).
	const timeout = time.Second
	l := newLimiter(t, c, ratelimit.Options{Prefix: uniquePrefix(t), Timeout: timeout, Cooldown: time.Hour})
	limit := ratelimit.PerMinute(600, 100)
	start := time.Now()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if d := l.Allow(context.Background(), "k", limit); !d.Allowed {
				t.Errorf("denied: %+v", d)
			}
		})
	}
	wg.Wait()
	// Concurrent first requests may each wait for the timeout once; after that the
	// breaker is open and no request waits.
	first := time.Since(start)
	start = time.Now()
	for range 50 {
		if d := l.Allow(context.Background(), "k", limit); !d.Local {
			t.Fatalf("breaker closed: %+v", d)
		}
	}
	if d := time.Since(start); d >= timeout {
		t.Fatalf("50 decisions with the breaker open took %v, a Redis timeout or more: one waited (first wave %v)", d, first)
	}
}

func TestRequestCancellationIsNotARedisFailure(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, redisClient(t), ratelimit.Options{Prefix: uniquePrefix(t)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if d := l.Allow(ctx, "k", ratelimit.PerMinute(10, 10)); d.Local || !d.Allowed {
		t.Fatalf("cancelled request: %+v", d)
	}
	if l.Degraded() {
		t.Fatal("a client's cancellation tripped the breaker")
	}
}

func TestLocalLimiter(t *testing.T) {
	t.Parallel()
	clk := newClock()
	l, err := ratelimit.NewLocal(0, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	limit := ratelimit.PerMinute(60, 3) // one per second, burst 3
	for i := range 3 {
		d := l.Allow("k", limit)
		if !d.Allowed || d.Remaining != 2-i {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	d := l.Allow("k", limit)
	if d.Allowed || d.RetryAfter != time.Second || d.ResetAfter != 3*time.Second {
		t.Fatalf("over the limit: %+v", d)
	}
	// A denied request does not consume an allowance.
	clk.advance(time.Second)
	if d := l.Allow("k", limit); !d.Allowed {
		t.Fatalf("after one interval: %+v", d)
	}
	if d := l.Allow("k", limit); d.Allowed {
		t.Fatalf("second request after one interval: %+v", d)
	}
	if d := l.Allow("other", limit); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("another key: %+v", d)
	}
}

func TestLocalLimiterConcurrentBurst(t *testing.T) {
	t.Parallel()
	l, err := ratelimit.NewLocal(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 120 {
		wg.Go(func() {
			if l.Allow("k", ratelimit.Limit{Rate: 100, Burst: 100, Period: time.Hour}).Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 100 {
		t.Fatalf("%d of 120 concurrent requests allowed, want 100", n)
	}
}

func TestLimitValidate(t *testing.T) {
	t.Parallel()
	for _, l := range []ratelimit.Limit{{}, {Rate: 1, Burst: 0, Period: time.Minute}, {Rate: 0, Burst: 1, Period: time.Minute}, {Rate: 1, Burst: 1}} {
		if l.Validate() == nil {
			t.Errorf("%+v accepted", l)
		}
	}
	if err := ratelimit.PerMinute(100, 100).Validate(); err != nil {
		t.Error(err)
	}
}
