package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Remote is the shared cache server (Redis) as the query side uses it: the
// catalog documents the documents sink writes, list results this package writes,
// the engagement rankings, and the invalidation channel. query/cache/redisstore
// implements it with go-redis.
type Remote interface {
	// MGet returns the values of keys in order, nil for a missing key.
	MGet(ctx context.Context, keys ...string) ([][]byte, error)
	// Set stores value under key for ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// RevRange returns up to limit members of the sorted set key from offset, highest
	// score first, and the set's size.
	RevRange(ctx context.Context, key string, offset, limit int) ([]string, int, error)
	// Subscribe calls ready once subscribed to channel, then handle with every
	// message, until ctx ends (nil) or the connection fails (an error).
	Subscribe(ctx context.Context, channel string, ready func(), handle func(payload []byte)) error
}

// Keys are the Redis names the query side reads and writes. The catalog names are
// the documents sink's contract (projections/documents, infra/redis.Keyspace);
// Lists and Rankings are prefixes of the query side's own keys.
type Keys struct {
	// Catalog is the catalog key space's base ("mm:catalog:v1").
	Catalog string
	// Lists prefixes the list results this package stores ("mm:query:v1:").
	Lists string
	// Rankings prefixes the engagement sorted sets ("mm:engagement:v1:").
	Rankings string
}

// DefaultKeys are the production names; tests put a namespace before each (see
// WithNamespace) so that tests sharing one Redis do not see each other's keys or
// messages.
var DefaultKeys = Keys{Catalog: "mm:catalog:v1", Lists: "mm:query:v1:", Rankings: "mm:engagement:v1:"}

// WithNamespace prefixes every name with ns ("test-42:").
func (k Keys) WithNamespace(ns string) Keys {
	return Keys{Catalog: ns + k.Catalog, Lists: ns + k.Lists, Rankings: ns + k.Rankings}
}

func (k Keys) program(id string) string         { return k.Catalog + ":program:" + id }
func (k Keys) programEpisodes(id string) string { return k.Catalog + ":program:" + id + ":episodes" }
func (k Keys) episode(id string) string         { return k.Catalog + ":episode:" + id }
func (k Keys) genBrowse() string                { return k.Catalog + ":gen:browse" }
func (k Keys) genSearch() string                { return k.Catalog + ":gen:search" }
func (k Keys) position() string                 { return k.Catalog + ":position" }
func (k Keys) invalidate() string               { return k.Catalog + ":invalidate" }

// RankingKey is the sorted set of a ranking ("trending", "popular") in a category
// ("" for the ranking over every category); projections/engagement writes it under
// the same scheme.
func RankingKey(prefix, ranking, category string) string {
	if category == "" {
		category = "_all"
	}
	return prefix + ranking + ":" + category
}

// ErrBreakerOpen is returned, without calling Redis, while the breaker is open.
var ErrBreakerOpen = errors.New("redis circuit breaker open")

// BreakerOptions tune the circuit breaker around Remote; zero values take the
// defaults.
type BreakerOptions struct {
	// Timeout bounds one call (100 ms): a Redis that answers slower than the
	// database fallback is no help.
	Timeout time.Duration
	// Failures is how many consecutive failures open the breaker (3).
	Failures int
	// Cooldown is how long it stays open before one call probes Redis again (5 s).
	Cooldown time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
	// OnStateChange, when set, is called with the breaker's state when it is built
	// (closed) and at every change: the composition root records it as
	// mediamesh_circuit_breaker_state. It runs under the breaker's lock: it must
	// be quick and must not call the breaker.
	OnStateChange func(BreakerState)
}

// BreakerState is a Breaker's state, numbered as
// mediamesh_circuit_breaker_state reports it.
type BreakerState int

// States of a Breaker.
const (
	// BreakerClosed: calls go through.
	BreakerClosed BreakerState = 0
	// BreakerHalfOpen: the cooldown is over and one probe call is in flight.
	BreakerHalfOpen BreakerState = 1
	// BreakerOpen: calls fail at once with ErrBreakerOpen until the cooldown ends.
	BreakerOpen BreakerState = 2
)

// Breaker wraps a Remote in a circuit breaker: after Failures consecutive failed
// calls it fails every call at once for Cooldown, then lets one call through; its
// success closes the breaker, its failure opens it for another Cooldown. So a
// stopped or unreachable Redis costs the query side one timeout per cooldown, and
// every read falls back to PostgreSQL meanwhile. A call cancelled by its caller
// does not count as a failure. Subscribe is passed through: its loop retries with
// its own backoff.
type Breaker struct {
	r    Remote
	opts BreakerOptions

	mu        sync.Mutex
	failures  int
	openUntil time.Time
	probing   bool
	state     BreakerState
}

// NewBreaker returns r behind a breaker.
func NewBreaker(r Remote, opts BreakerOptions) *Breaker {
	if opts.Timeout <= 0 {
		opts.Timeout = 100 * time.Millisecond
	}
	if opts.Failures <= 0 {
		opts.Failures = 3
	}
	if opts.Cooldown <= 0 {
		opts.Cooldown = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnStateChange != nil {
		opts.OnStateChange(BreakerClosed)
	}
	return &Breaker{r: r, opts: opts}
}

// setState records s and reports a change; b.mu is held.
func (b *Breaker) setState(s BreakerState) {
	if s == b.state {
		return
	}
	b.state = s
	if b.opts.OnStateChange != nil {
		b.opts.OnStateChange(s)
	}
}

// Open reports whether the breaker is open now.
func (b *Breaker) Open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opts.Now().Before(b.openUntil)
}

// allow decides whether a call may go through; probe is true for the one call
// after a cooldown.
func (b *Breaker) allow() (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.opts.Failures {
		return true, false
	}
	if b.opts.Now().Before(b.openUntil) || b.probing {
		return false, false
	}
	b.probing = true
	b.setState(BreakerHalfOpen)
	return true, true
}

func (b *Breaker) done(caller context.Context, probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch {
	case err == nil:
		b.failures = 0
	case caller.Err() != nil:
		// The caller gave up: says nothing about Redis.
	default:
		b.failures++
		if b.failures >= b.opts.Failures {
			b.openUntil = b.opts.Now().Add(b.opts.Cooldown)
		}
	}
	if b.failures >= b.opts.Failures {
		b.setState(BreakerOpen)
	} else {
		b.setState(BreakerClosed)
	}
}

func call[T any](b *Breaker, ctx context.Context, f func(ctx context.Context) (T, error)) (T, error) {
	ok, probe := b.allow()
	if !ok {
		var zero T
		return zero, ErrBreakerOpen
	}
	cctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	v, err := f(cctx)
	cancel()
	b.done(ctx, probe, err)
	if err != nil {
		return v, fmt.Errorf("redis: %w", err)
	}
	return v, nil
}

// MGet implements Remote.
func (b *Breaker) MGet(ctx context.Context, keys ...string) ([][]byte, error) {
	return call(b, ctx, func(ctx context.Context) ([][]byte, error) { return b.r.MGet(ctx, keys...) })
}

// Set implements Remote.
func (b *Breaker) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	_, err := call(b, ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, b.r.Set(ctx, key, value, ttl) })
	return err
}

// RevRange implements Remote.
func (b *Breaker) RevRange(ctx context.Context, key string, offset, limit int) ([]string, int, error) {
	type res struct {
		ids   []string
		total int
	}
	r, err := call(b, ctx, func(ctx context.Context) (res, error) {
		ids, total, err := b.r.RevRange(ctx, key, offset, limit)
		return res{ids, total}, err
	})
	return r.ids, r.total, err
}

// Subscribe implements Remote (unguarded).
func (b *Breaker) Subscribe(ctx context.Context, channel string, ready func(), handle func([]byte)) error {
	return b.r.Subscribe(ctx, channel, ready, handle)
}
