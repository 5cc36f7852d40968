package ratelimit

import (
	"errors"
	"math"
	"time"

	"github.com/maypok86/otter/v2"
	"golang.org/x/time/rate"
)

// DefaultLocalMaxKeys bounds the local limiter's keys (clients × scopes): about
// 100 bytes each, so 100k take ~10 MB.
const DefaultLocalMaxKeys = 100_000

// Local is an in-process limiter: one token bucket (golang.org/x/time/rate) per
// key, with the same Limit semantics as the Redis one (Burst at once, Rate per
// Period). It is Limiter's fallback, and the whole limiter when Redis is disabled.
//
// The buckets live in a bounded cache (otter). A bucket idle for as long as it takes
// to refill completely is dropped: a new one is indistinguishable from it. When
// more keys are active than the bound, the least useful buckets are evicted, which
// hands their clients a fresh burst: the bound trades exactness for memory under a
// flood of distinct clients.
type Local struct {
	buckets *otter.Cache[string, *rate.Limiter]
	now     func() time.Time
}

// NewLocal returns a local limiter of at most maxKeys buckets (DefaultLocalMaxKeys
// when 0); now is its clock (nil: time.Now).
func NewLocal(maxKeys int, now func() time.Time) (*Local, error) {
	if maxKeys == 0 {
		maxKeys = DefaultLocalMaxKeys
	}
	if maxKeys < 0 {
		return nil, errors.New("local rate limiter: negative size")
	}
	if now == nil {
		now = time.Now
	}
	c, err := otter.New(&otter.Options[string, *rate.Limiter]{
		MaximumSize: maxKeys,
		ExpiryCalculator: otter.ExpiryAccessingFunc(func(e otter.Entry[string, *rate.Limiter]) time.Duration {
			// Time to refill the whole burst from empty, plus a margin.
			return time.Duration(float64(e.Value.Burst())/float64(e.Value.Limit())*float64(time.Second)) + time.Second
		}),
	})
	if err != nil {
		return nil, err
	}
	return &Local{buckets: c, now: now}, nil
}

// Allow decides one request under key within limit.
func (l *Local) Allow(key string, limit Limit) Decision {
	b, ok := l.buckets.GetIfPresent(key)
	if !ok {
		b, _ = l.buckets.SetIfAbsent(key, rate.NewLimiter(rate.Every(limit.interval()), limit.Burst))
	}
	now := l.now()
	d := Decision{Limit: limit, Local: true}
	r := b.ReserveN(now, 1)
	if delay := r.DelayFrom(now); !r.OK() || delay > 0 {
		r.CancelAt(now)
		d.RetryAfter = max(delay, time.Millisecond)
	} else {
		d.Allowed = true
	}
	tokens := max(b.TokensAt(now), 0)
	d.Remaining = int(math.Floor(tokens))
	d.ResetAfter = time.Duration((float64(limit.Burst) - tokens) * float64(limit.interval()))
	return d
}

// Close stops the cache's background goroutine.
func (l *Local) Close() { l.buckets.StopAllGoroutines() }
