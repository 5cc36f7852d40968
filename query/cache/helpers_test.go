package cache_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/mediamesh/mediamesh/api"
	bussql "github.com/mediamesh/mediamesh/infra/bus/sql"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel/readmodeltest"
	"github.com/mediamesh/mediamesh/infra/ratelimit"
	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	"github.com/mediamesh/mediamesh/infra/redis/redistest"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/search"
	"github.com/mediamesh/mediamesh/query/app"
	"github.com/mediamesh/mediamesh/query/cache"
	"github.com/mediamesh/mediamesh/query/cache/redisstore"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// world is a catalog written through the projections, with the documents sink
// writing a namespace of the real Redis.
type world struct {
	*readmodeltest.World
	rc   goredis.UniversalClient
	ns   string
	keys cache.Keys
}

func newWorld(t *testing.T) *world {
	t.Helper()
	rc := redistest.Client(t)
	ns := redistest.Namespace(t, rc)
	w := readmodeltest.New(t, readmodeltest.Options{Search: true, Redis: rc, Keyspace: mmredis.CatalogKeyspace(1).WithNamespace(ns)})
	return &world{World: w, rc: rc, ns: ns, keys: cache.DefaultKeys.WithNamespace(ns)}
}

// stackOptions choose how the query side reaches Redis.
type stackOptions struct {
	// redisAddr is where the cache's Redis client connects ("" the test server;
	// "off" no Redis at all).
	redisAddr string
	opts      cache.Options
	wait      time.Duration
	// cooldown is the breaker's (200 ms).
	cooldown time.Duration
}

// stack is the query side on a world: PostgreSQL read models, the Redis layers,
// the in-process cache and the HTTP app.
type stack struct {
	w        *world
	catalog  *readmodel.Catalog
	router   *readmodel.Router
	inner    *app.Discovery
	cached   *cache.Discovery
	counters *cache.Counters
	breaker  *cache.Breaker
	app      *fiber.App
	tokens   *api.ConsistencyTokens
}

// redisClient returns a client that gives up fast: no retries, short dials, and
// the context's deadline respected (what the query role should configure).
func redisClient(t *testing.T, addr string) goredis.UniversalClient {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond, DialerRetries: 1,
		ContextTimeoutEnabled: true, PoolSize: 32})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newStack(t *testing.T, w *world, so stackOptions) *stack {
	t.Helper()
	s := &stack{w: w, counters: &cache.Counters{}}
	r, err := readmodel.NewRouter(w.Pool, nil, readmodel.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.router = r
	s.catalog, err = readmodel.NewCatalog(r, readmodel.CatalogTables{})
	if err != nil {
		t.Fatal(err)
	}
	var remote cache.Remote
	switch so.redisAddr {
	case "off":
	default:
		addr := so.redisAddr
		if addr == "" {
			addr = "127.0.0.1:6379"
		}
		store, err := redisstore.New(redisClient(t, addr))
		if err != nil {
			t.Fatal(err)
		}
		cooldown := so.cooldown
		if cooldown == 0 {
			cooldown = 200 * time.Millisecond
		}
		s.breaker = cache.NewBreaker(store, cache.BreakerOptions{Timeout: 500 * time.Millisecond, Cooldown: cooldown})
		remote = s.breaker
	}
	docs, err := cache.NewDocuments(remote, w.keys, s.catalog, s.counters, nil)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := readmodel.NewPostgresSearchIndex(r, search.IndexName(search.Version), func(db *pgxpool.Pool) (search.Reader, error) {
		return searchpg.New(db)
	})
	if err != nil {
		t.Fatal(err)
	}
	pgRanks, err := readmodel.NewRankings(r)
	if err != nil {
		t.Fatal(err)
	}
	ranks, err := cache.NewRankings(remote, w.keys, pgRanks, s.counters)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := bussql.NewPublisher(w.Pool, bussql.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s.inner, err = app.NewDiscovery(app.DiscoveryDeps{Programs: docs, Episodes: docs, Episode: docs, Browse: s.catalog,
		Categories: s.catalog, Search: idx, Rankings: ranks, Checkpoints: s.catalog, Waiter: w.Waiter, Plays: pub},
		app.DiscoveryOptions{ConsistencyWait: so.wait})
	if err != nil {
		t.Fatal(err)
	}
	opts := so.opts
	opts.Remote, opts.Keys, opts.Metrics = remote, w.keys, s.counters
	opts.Logger = slog.New(slog.DiscardHandler)
	s.cached, err = cache.New(s.inner, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.cached.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if remote != nil && so.redisAddr == "" {
		waitFor(t, "the invalidation subscription", s.cached.Healthy)
	}
	s.app = newApp(t, s.cached, so.wait)
	s.tokens, err = api.NewConsistencyTokens(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newApp(t *testing.T, d api.Discovery, wait time.Duration) *fiber.App {
	t.Helper()
	lim, err := ratelimit.New(nil, ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	return api.New(api.Config{ConsistencySecret: secret, ConsistencyWait: wait}, api.Deps{Discovery: d, RateLimiter: lim,
		Logger: slog.New(slog.DiscardHandler)})
}

// waitFor waits until cond holds, failing after 15 s: a bounded wait on a
// condition, not a guess.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type response struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, a *fiber.App, path string, headers ...string) response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Set(headers[i], headers[i+1])
	}
	return do(t, a, r)
}

func do(t *testing.T, a *fiber.App, r *http.Request) response {
	t.Helper()
	res, err := a.Test(r, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

func post(t *testing.T, a *fiber.App, path, body string) response {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return do(t, a, r)
}

// proxy is a TCP proxy to the test Redis that can be taken down and brought back
// on the same address: a Redis "whose server goes away".
type proxy struct {
	t      *testing.T
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	closed bool
}

func newProxy(t *testing.T) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, addr: ln.Addr().String()}
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln, p.closed = ln, false
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", "127.0.0.1:6379")
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				c.Close()
				up.Close()
				return
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

// down closes the listener and every connection.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.ln != nil {
		p.ln.Close()
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// up listens again on the same address.
func (p *proxy) up() {
	p.t.Helper()
	var ln net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("proxy cannot listen on %s again: %v", p.addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.serve(ln)
}
