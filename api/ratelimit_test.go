package api_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/accounts"
	"github.com/mediamesh/mediamesh/infra/ratelimit"
)

// redisStartHint starts this machine's Redis, a core test server: its tests fail,
// never skip, without it.
const redisStartHint = `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log`

// redisLimiter is one instance's limiter on the real Redis, under prefix. Its
// timeout is generous: under the race detector on two busy cores a Redis round
// trip can take hundreds of milliseconds, and a test of sharing must not fall back
// to local limits (the fallback has its own test).
func redisLimiter(t *testing.T, prefix string) *ratelimit.Limiter {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at 127.0.0.1:6379 is not reachable (%v); start it with:\n  %s", err, redisStartHint)
	}
	l, err := ratelimit.New(c, ratelimit.Options{Prefix: prefix, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	// Load the limiter's script and open a connection before any measurement.
	if d := l.Allow(ctx, "warm-up", ratelimit.PerMinute(1, 1)); d.Local {
		t.Fatal("warm-up decided locally")
	}
	return l
}

// decisions records when rate limit decisions were made and how many were local.
type decisions struct {
	mu          sync.Mutex
	first, last time.Time
	local       int
}

// recordingLimiter passes decisions through and records them.
type recordingLimiter struct {
	l   api.RateLimiter
	rec *decisions
}

func (r *recordingLimiter) Allow(ctx context.Context, key string, limit ratelimit.Limit) ratelimit.Decision {
	d := r.l.Allow(ctx, key, limit)
	now := time.Now()
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	if r.rec.first.IsZero() {
		r.rec.first = now
	}
	r.rec.last = now
	if d.Local {
		r.rec.local++
	}
	return d
}

func uniquePrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "test:" + t.Name() + ":" + hex.EncodeToString(b) + ":"
}

type outcome struct {
	instance int
	status   int
	header   http.Header
}

// TestLoginBurstAcrossInstancesSharesOneLimit sends 120 concurrent logins from one
// IP (127.0.0.1), alternating between two server instances that share Redis and the
// database. The auth limit is 100 per minute with a burst of 100, so at most 100
// get through (plus one per 0.6 s the decisions were spread over, refilled by the
// rate; none when they take less than 0.6 s, as they do without -race), and the
// rest are 429 with Retry-After and the X-RateLimit-* headers. Two instances with
// their own limits would let all 120 through.
func TestLoginBurstAcrossInstancesSharesOneLimit(t *testing.T) {
	t.Parallel()
	st := newAuthStack(t)
	if _, err := st.accounts.CreateUser.Handle(context.Background(), accounts.CreateUser{Email: "ann@example.com", Password: password, Role: accounts.RoleViewer}); err != nil {
		t.Fatal(err)
	}
	prefix := uniquePrefix(t)
	// Both instances' decisions are recorded together, to know when the first and
	// the last were made and that Redis made them all.
	rec := &decisions{}
	bases := []string{
		listen(t, st.instance(t, &recordingLimiter{redisLimiter(t, prefix), rec})),
		listen(t, st.instance(t, &recordingLimiter{redisLimiter(t, prefix), rec})),
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 120}}
	t.Cleanup(client.CloseIdleConnections)

	const n = 120
	// Open the connections first (a health check each), so that the burst is the
	// logins and not 120 TCP handshakes.
	var warm sync.WaitGroup
	for i := range n {
		warm.Go(func() {
			if res, err := client.Get(bases[i%2] + "/health/live"); err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	}
	warm.Wait()

	results := make([]outcome, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			body := strings.NewReader(`{"email":"ann@example.com","password":"` + password + `"}`)
			r, err := http.NewRequest(http.MethodPost, bases[i%2]+"/v1/auth/login", body)
			if err != nil {
				errs[i] = err
				return
			}
			r.Header.Set("Content-Type", "application/json")
			res, err := client.Do(r)
			if err != nil {
				errs[i] = err
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			results[i] = outcome{instance: i % 2, status: res.StatusCode, header: res.Header}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	rec.mu.Lock()
	window, local := rec.last.Sub(rec.first), rec.local
	rec.mu.Unlock()
	if local != 0 {
		t.Fatalf("%d decisions were made locally: Redis failed during the burst", local)
	}

	allowed, limited := 0, 0
	perInstance := [2]int{}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		perInstance[r.instance]++
		switch r.status {
		case http.StatusOK:
			allowed++
		case http.StatusTooManyRequests:
			limited++
			ra, err := strconv.Atoi(r.header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 60 {
				t.Errorf("429 Retry-After %q", r.header.Get("Retry-After"))
			}
			if r.header.Get(api.HeaderRateLimitRemaining) != "0" {
				t.Errorf("429 X-RateLimit-Remaining %q", r.header.Get(api.HeaderRateLimitRemaining))
			}
		default:
			t.Fatalf("request %d: status %d", i, r.status)
		}
		if r.header.Get(api.HeaderRateLimitLimit) != "100" || r.header.Get(api.HeaderRateLimitReset) == "" || r.header.Get(api.HeaderRateLimitRemaining) == "" {
			t.Errorf("status %d without the X-RateLimit-* headers: %v", r.status, r.header)
		}
	}
	// GCRA gives the burst of 100 at once and one more per 0.6 s after that: the
	// decisions spread over window may legitimately allow that many more.
	refilled := int(window / (time.Minute / 100))
	t.Logf("%d allowed, %d limited; decisions within %v, burst done in %v", allowed, limited, window, elapsed)
	if allowed < 100 || allowed > 100+refilled {
		t.Fatalf("%d of %d logins got through (decisions within %v); want 100, at most %d with the refill", allowed, n, window, 100+refilled)
	}
	if perInstance[0] != n/2 || perInstance[1] != n/2 {
		t.Fatalf("requests per instance %v", perInstance)
	}
}

// TestRateLimitFallsBackWhenRedisIsDown points the limiter at a port nothing
// listens on: requests are still limited (in-process, same limits), and none gets a
// 5xx.
func TestRateLimitFallsBackWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{dead}, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	l, err := ratelimit.New(c, ratelimit.Options{Prefix: uniquePrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	e := newEnv(t, withDeps(func(d *api.Deps) { d.RateLimiter = l }),
		withConfig(func(c *api.Config) { c.RateLimits.Auth = ratelimit.PerMinute(10, 10) }))

	counts := map[int]int{}
	for range 15 {
		// newEnv's login refuses everyone (401) once past the limiter.
		res := e.do(t, post("/v1/auth/login", `{}`))
		counts[res.status]++
		if res.status == http.StatusTooManyRequests && res.header.Get("Retry-After") == "" {
			t.Fatalf("429 without Retry-After: %v", res.header)
		}
	}
	if counts[http.StatusUnauthorized] != 10 || counts[http.StatusTooManyRequests] != 5 || len(counts) != 2 {
		t.Fatalf("statuses %v, want 10×401 (the fake login) and 5×429", counts)
	}
	if !l.Degraded() {
		t.Fatal("the limiter does not know Redis is down")
	}
}

// TestRateLimitScopesAreSeparate: the auth scope's bucket does not drain the public
// one (the JWK Set), and a 429 is a problem document.
func TestRateLimitScopesAreSeparate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withConfig(func(c *api.Config) {
		c.RateLimits.Auth = ratelimit.PerMinute(2, 2)
		c.RateLimits.Public = ratelimit.PerMinute(3, 3)
	}))
	for range 2 {
		e.do(t, post("/v1/auth/refresh", `{"refresh_token":"x"}`)).problem(t, http.StatusUnauthorized)
	}
	p := e.do(t, post("/v1/auth/register", `{}`)).problem(t, http.StatusTooManyRequests)
	if !strings.HasSuffix(p.Type, ":rate-limited") {
		t.Fatalf("429 type %q", p.Type)
	}
	for i := range 3 {
		if r := e.do(t, req{method: http.MethodGet, path: "/.well-known/jwks.json"}); r.status != http.StatusOK || r.header.Get(api.HeaderRateLimitRemaining) != strconv.Itoa(2-i) {
			t.Fatalf("jwks %d: %d, remaining %q", i, r.status, r.header.Get(api.HeaderRateLimitRemaining))
		}
	}
	e.do(t, req{method: http.MethodGet, path: "/.well-known/jwks.json"}).problem(t, http.StatusTooManyRequests)
	// Unlimited routes stay unlimited.
	for range 5 {
		if r := e.do(t, req{method: http.MethodGet, path: "/health/live"}); r.status != http.StatusOK {
			t.Fatalf("health: %d", r.status)
		}
	}
}
