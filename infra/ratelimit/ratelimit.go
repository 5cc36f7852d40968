// Package ratelimit limits request rates per key (a client IP and a scope), shared
// by every instance through Redis, with an in-process fallback for when Redis is
// unreachable.
//
// Decisions:
//   - The shared limiter is github.com/go-redis/redis_rate (GCRA, one Lua script per
//     decision, one key per client and scope), on a go-redis UniversalClient, so a
//     single server, a Sentinel setup and a Redis Cluster all work. GCRA keeps one
//     timestamp per key and allows Burst requests at once, then Rate per Period.
//   - When Redis fails (an error or a call slower than Options.Timeout), the decision
//     is made by a local limiter with the same limits (golang.org/x/time/rate, one
//     per key, in a bounded cache) and Redis is not asked again for
//     Options.Cooldown: a simple circuit breaker, so that a dead Redis costs no
//     latency. After the cooldown one request probes Redis; its success closes the
//     breaker. While open, each instance enforces the limit on its own, so a client
//     spread over N instances may get up to N times the limit: degraded, but never
//     unlimited and never an error for the client.
//   - A request's cancellation does not count as a Redis failure (the call runs on a
//     context detached from the request, bounded by the timeout).
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Limit allows Burst requests at once and Rate requests per Period on average.
type Limit struct {
	Rate   int
	Burst  int
	Period time.Duration
}

// PerMinute returns a limit of rate requests per minute with burst.
func PerMinute(rate, burst int) Limit { return Limit{Rate: rate, Burst: burst, Period: time.Minute} }

// Validate reports a limit that cannot be enforced.
func (l Limit) Validate() error {
	if l.Rate < 1 || l.Burst < 1 || l.Period <= 0 {
		return fmt.Errorf("rate limit %d/%s burst %d: rate, burst and period must be positive", l.Rate, l.Period, l.Burst)
	}
	return nil
}

// interval is the time one request's allowance takes to come back.
func (l Limit) interval() time.Duration { return l.Period / time.Duration(l.Rate) }

// Decision is the outcome of one request.
type Decision struct {
	Allowed bool
	Limit   Limit
	// Remaining is how many more requests would be allowed right now.
	Remaining int
	// RetryAfter is how long until the next request is allowed (0 when allowed).
	RetryAfter time.Duration
	// ResetAfter is how long until the full burst is available again.
	ResetAfter time.Duration
	// Local is true when the in-process fallback decided (Redis unavailable).
	Local bool
}

// Defaults of Options.
const (
	DefaultPrefix   = "mediamesh:"
	DefaultTimeout  = 250 * time.Millisecond
	DefaultCooldown = 5 * time.Second
)

// Options tune a Limiter; the zero value of a field means its default.
type Options struct {
	// Prefix starts every Redis key (redis_rate adds "rate:" before it); tests use a
	// unique one.
	Prefix string
	// Timeout bounds one Redis decision (250 ms); slower counts as a failure. It is
	// far above a healthy round trip (well under 1 ms) so that a CPU-starved
	// instance, e.g. during a login flood, does not mistake its own slowness for a
	// Redis outage and fall back to looser per-instance limits.
	Timeout time.Duration
	// Cooldown is how long Redis is left alone after a failure (5 s).
	Cooldown time.Duration
	// LocalMaxKeys bounds the fallback's per-key limiters (DefaultLocalMaxKeys).
	LocalMaxKeys int
	// Logger receives one line when the fallback starts and one when Redis is back.
	Logger *slog.Logger
	// Now is the clock of the local limiter and the breaker (tests).
	Now func() time.Time
}

// Limiter decides with Redis when it can and locally when it cannot. It is safe
// for concurrent use.
type Limiter struct {
	redis    *redis_rate.Limiter // nil: local only
	local    *Local
	prefix   string
	timeout  time.Duration
	cooldown time.Duration
	log      *slog.Logger
	now      func() time.Time

	// openUntil is the breaker: 0 when closed (Redis is used), else the Unix
	// nanoseconds until which Redis is not asked. probing is held by the one request
	// that tries Redis again after the cooldown.
	openUntil atomic.Int64
	probing   atomic.Bool
}

// New returns a Limiter on client; a nil client means local limiting only (Redis
// disabled by configuration).
func New(client redis.UniversalClient, o Options) (*Limiter, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Cooldown <= 0 {
		o.Cooldown = DefaultCooldown
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	local, err := NewLocal(o.LocalMaxKeys, o.Now)
	if err != nil {
		return nil, err
	}
	l := &Limiter{local: local, prefix: o.Prefix, timeout: o.Timeout, cooldown: o.Cooldown, log: o.Logger, now: o.Now}
	if client != nil {
		l.redis = redis_rate.NewLimiter(client)
	}
	return l, nil
}

// Allow decides whether one more request under key may proceed within limit. It
// never fails: without Redis it decides locally. Requests of one key must always
// come with the same limit (the key names the limit's scope).
func (l *Limiter) Allow(ctx context.Context, key string, limit Limit) Decision {
	if l.redis == nil || !l.tryRedis() {
		return l.local.Allow(key, limit)
	}
	d, err := l.allowRedis(ctx, key, limit)
	if err != nil {
		l.trip(err)
		return l.local.Allow(key, limit)
	}
	l.recover()
	return d
}

func (l *Limiter) allowRedis(ctx context.Context, key string, limit Limit) (Decision, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
	defer cancel()
	res, err := l.redis.Allow(ctx, l.prefix+key, redis_rate.Limit{Rate: limit.Rate, Burst: limit.Burst, Period: limit.Period})
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Allowed: res.Allowed > 0, Limit: limit, Remaining: max(res.Remaining, 0), ResetAfter: max(res.ResetAfter, 0)}
	if !d.Allowed {
		d.RetryAfter = max(res.RetryAfter, time.Millisecond)
	}
	return d, nil
}

// tryRedis reports whether this request should ask Redis: always while the
// breaker is closed, never while it is open, and for one request at a time once
// the cooldown has passed.
func (l *Limiter) tryRedis() bool {
	until := l.openUntil.Load()
	if until == 0 {
		return true
	}
	if l.now().UnixNano() < until {
		return false
	}
	return l.probing.CompareAndSwap(false, true)
}

// trip opens the breaker for the cooldown (logged once per outage).
func (l *Limiter) trip(err error) {
	was := l.openUntil.Swap(l.now().Add(l.cooldown).UnixNano())
	l.probing.Store(false)
	if was == 0 {
		l.log.Warn("redis rate limiter unavailable; limiting in-process until it is back",
			slog.String("error", err.Error()), slog.Duration("retry_in", l.cooldown))
	}
}

// recover closes the breaker after a successful Redis call.
func (l *Limiter) recover() {
	if l.openUntil.Load() == 0 {
		return
	}
	if l.openUntil.Swap(0) != 0 {
		l.log.Info("redis rate limiter is back")
	}
	l.probing.Store(false)
}

// Degraded reports whether decisions are currently local because Redis failed.
func (l *Limiter) Degraded() bool { return l.openUntil.Load() != 0 }

// Close releases the local limiter's resources.
func (l *Limiter) Close() { l.local.Close() }
