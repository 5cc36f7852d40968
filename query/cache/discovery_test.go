package cache_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediamesh/mediamesh/api"
	cmdapp "github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel/readmodeltest"
	"github.com/mediamesh/mediamesh/projections/engagement"
	"github.com/mediamesh/mediamesh/query/app"
	"github.com/mediamesh/mediamesh/query/cache"
	"github.com/mediamesh/mediamesh/query/cache/redisstore"
)

// fixture is the catalog every test of this file reads.
type fixture struct {
	a, b, c, e1, e2 string
	last            int64
}

func populate(t *testing.T, w *world) fixture {
	t.Helper()
	var f fixture
	f.a, _ = w.CreateProgram(t, readmodeltest.Program{Title: "Nordic Noir", Description: "Cold cases.", Category: "drama", Language: "en-GB",
		Tags: []string{"crime", "noir"}, Publish: true})
	f.e1, _ = w.AddEpisode(t, f.a, readmodeltest.Episode{Title: "Pilot", Number: 1, Season: 1, Publish: true})
	f.e2, _ = w.AddEpisode(t, f.a, readmodeltest.Episode{Title: "Second", Number: 2, Season: 1, Publish: true})
	f.b, _ = w.CreateProgram(t, readmodeltest.Program{Title: "Deep Sea", Category: "documentary", Tags: []string{"nature"}, Publish: true})
	var res cmdapp.Result
	f.c, res = w.CreateProgram(t, readmodeltest.Program{Title: "Draft Show", Category: "drama"})
	w.Sync(t, res)
	f.last = res.Position

	counter, err := engagement.NewCounter(w.Pool, engagement.CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	plays := []engagement.Play{{ProgramID: f.b, SessionID: "x", OccurredAt: now}}
	for i := range 3 {
		plays = append(plays, engagement.Play{ProgramID: f.a, SessionID: strconv.Itoa(i), OccurredAt: now})
	}
	if _, err := counter.Count(context.Background(), plays); err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.New(w.rc)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := engagement.NewRefresher(w.Pool, store, engagement.RefresherOptions{KeyPrefix: w.keys.Rankings})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{engagement.RankingTrending, engagement.RankingPopular} {
		if err := ref.Refresh(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

type endpoint struct {
	path   string
	status int
	// contains are substrings of the body, in order.
	contains []string
	absent   []string
}

func endpoints(f fixture) []endpoint {
	return []endpoint{
		{path: "/v1/programs/" + f.a, status: 200, contains: []string{`"title":"Nordic Noir"`, `"tags":["crime","noir"]`, `"episode_count":2`}},
		{path: "/v1/programs/" + f.c, status: 404},
		{path: "/v1/programs/0190f1f4-0000-7000-8000-00000000dead", status: 404},
		{path: "/v1/programs/" + f.a + "/episodes?season=1", status: 200, contains: []string{`"title":"Pilot"`, `"title":"Second"`, `"total":2`}},
		{path: "/v1/programs/" + f.a + "/episodes?page=2&limit=1", status: 200, contains: []string{`"title":"Second"`, `"page":2`}, absent: []string{"Pilot"}},
		{path: "/v1/programs/" + f.c + "/episodes", status: 404},
		{path: "/v1/episodes/" + f.e1, status: 200, contains: []string{`"program_id":"` + f.a + `"`, `"title":"Pilot"`}},
		{path: "/v1/episodes/0190f1f4-0000-7000-8000-00000000dead", status: 404},
		{path: "/v1/programs?category=drama", status: 200, contains: []string{"Nordic Noir", `"total":1`}, absent: []string{"Draft Show"}},
		{path: "/v1/programs?sort=title&limit=1&page=2", status: 200, contains: []string{"Nordic Noir", `"total":2`}},
		{path: "/v1/programs?language=en-gb&tag=noir", status: 200, contains: []string{"Nordic Noir"}},
		{path: "/v1/search?q=nordik", status: 200, contains: []string{"Nordic Noir", `"facets":{"category":{"drama":1}`}},
		{path: "/v1/search?q=sea&category=drama", status: 200, contains: []string{`"items":[]`, `"documentary":1`}},
		{path: "/v1/trending", status: 200, contains: []string{"Nordic Noir", "Deep Sea", `"total":2`}},
		{path: "/v1/popular?category=documentary", status: 200, contains: []string{"Deep Sea", `"total":1`}, absent: []string{"Nordic"}},
		{path: "/v1/categories", status: 200, contains: []string{`[{"slug":"documentary","program_count":1},{"slug":"drama","program_count":1}]`}},
		{path: "/v1/programs?limit=51", status: 400},
	}
}

func check(t *testing.T, label string, e endpoint, res response) {
	t.Helper()
	if res.status != e.status {
		t.Fatalf("%s %s: %d, want %d: %s", label, e.path, res.status, e.status, res.body)
	}
	if res.header.Get("X-Projection-Position") == "" {
		t.Errorf("%s %s: no X-Projection-Position", label, e.path)
	}
	rest := res.body
	for _, s := range e.contains {
		i := strings.Index(rest, s)
		if i < 0 {
			t.Errorf("%s %s: %q not in %s", label, e.path, s, res.body)
			break
		}
		rest = rest[i+len(s):]
	}
	for _, s := range e.absent {
		if strings.Contains(res.body, s) {
			t.Errorf("%s %s: %q in %s", label, e.path, s, res.body)
		}
	}
}

// TestEveryEndpointOnEveryLayer serves every discovery endpoint through the real
// HTTP app four ways: without caches, with the caches and Redis, with Redis
// unreachable (a closed port) and with Redis off. The answers are the same, never
// a 5xx, and a repeated read is a memory hit.
func TestEveryEndpointOnEveryLayer(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := populate(t, w)
	redis := newStack(t, w, stackOptions{})
	closed := newStack(t, w, stackOptions{redisAddr: "127.0.0.1:1", cooldown: time.Minute})
	off := newStack(t, w, stackOptions{redisAddr: "off"})
	bare := newApp(t, off.inner, 0)

	for _, e := range endpoints(f) {
		want := get(t, bare, e.path)
		check(t, "uncached", e, want)
		for _, s := range []struct {
			name string
			s    *stack
		}{{"redis", redis}, {"redis unreachable", closed}, {"redis off", off}} {
			hits := s.s.counters.Get(cache.LayerMemory, cache.ResultHit)
			for round := range 2 {
				got := get(t, s.s.app, e.path)
				check(t, s.name, e, got)
				if got.body != want.body && e.status == 200 {
					t.Errorf("%s %s: body differs from the uncached one\n got %s\nwant %s", s.name, e.path, got.body, want.body)
				}
				if round == 1 && e.status != 400 && s.s.counters.Get(cache.LayerMemory, cache.ResultHit) <= hits {
					t.Errorf("%s %s: the repeated read was not a memory hit", s.name, e.path)
				}
			}
		}
	}
	if n := redis.counters.Get(cache.LayerRedis, cache.ResultHit); n == 0 {
		t.Error("the Redis stack never hit Redis")
	}
	if n := closed.counters.Get(cache.LayerRedis, cache.ResultError); n == 0 || !closed.breaker.Open() {
		t.Errorf("unreachable Redis: %d errors, breaker open %v", n, closed.breaker.Open())
	}
	if closed.cached.Healthy() || off.cached.Healthy() || !redis.cached.Healthy() {
		t.Error("health does not follow the subscription")
	}
	for _, s := range []*stack{redis, closed, off} {
		res := post(t, s.app, "/v1/plays", `{"program_id":"`+f.a+`","session_id":"s-1"}`)
		if res.status != http.StatusAccepted {
			t.Errorf("play: %d %s", res.status, res.body)
		}
	}
	if res := post(t, redis.app, "/v1/plays", `{"program_id":"`+f.c+`","session_id":"s-1"}`); res.status != http.StatusNotFound {
		t.Errorf("play of a draft: %d", res.status)
	}
}

// TestInvalidationsReachTheCache: with lifetimes far beyond the test, what the
// projections change shows through the in-process cache only because the
// documents sink's messages (and generations) reach it.
func TestInvalidationsReachTheCache(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := populate(t, w)
	long := cache.TTLs{Program: time.Hour, Episodes: time.Hour, Search: time.Hour, Trending: time.Hour, Popular: time.Hour, Browse: time.Hour, Categories: time.Hour}
	s := newStack(t, w, stackOptions{opts: cache.Options{TTLs: long, ShortTTL: time.Hour}})
	paths := []string{"/v1/programs/" + f.a, "/v1/programs/" + f.a + "/episodes", "/v1/episodes/" + f.e1, "/v1/programs?category=drama",
		"/v1/search?q=noir", "/v1/categories", "/v1/trending", "/v1/programs/" + f.c}
	for _, p := range paths {
		get(t, s.app, p)
	}
	eventually := func(what, path string, ok func(response) bool) {
		t.Helper()
		waitFor(t, what, func() bool { return ok(get(t, s.app, path)) })
	}
	w.Sync(t, w.Retitle(t, f.a, "Nordic Noir Redux"))
	for _, p := range []string{"/v1/programs/" + f.a, "/v1/programs?category=drama", "/v1/search?q=noir", "/v1/trending"} {
		eventually("the new title at "+p, p, func(r response) bool { return strings.Contains(r.body, "Nordic Noir Redux") })
	}
	_, res := w.AddEpisode(t, f.a, readmodeltest.Episode{Title: "Third", Number: 3, Season: 1, Publish: true})
	w.Sync(t, res)
	eventually("the new episode", "/v1/programs/"+f.a+"/episodes", func(r response) bool { return strings.Contains(r.body, "Third") })
	w.Sync(t, w.Publish(t, f.c))
	eventually("the published draft", "/v1/programs/"+f.c, func(r response) bool { return r.status == 200 })
	eventually("the new category count", "/v1/categories", func(r response) bool { return strings.Contains(r.body, `"drama","program_count":2`) })
	w.Sync(t, w.Unpublish(t, f.a))
	eventually("the unpublished program gone", "/v1/programs/"+f.a, func(r response) bool { return r.status == 404 })
	eventually("its episode gone", "/v1/episodes/"+f.e1, func(r response) bool { return r.status == 404 })
	eventually("its episode list gone", "/v1/programs/"+f.a+"/episodes", func(r response) bool { return r.status == 404 })
	eventually("it left the list", "/v1/programs?category=drama", func(r response) bool { return !strings.Contains(r.body, "Nordic") })
	eventually("it left trending", "/v1/trending", func(r response) bool { return !strings.Contains(r.body, "Nordic") })
}

// TestReadYourWrites: a read with a consistency token includes its write at once,
// whatever the caches hold, and is private; a write that never lands is a 503.
func TestReadYourWrites(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := populate(t, w)
	s := newStack(t, w, stackOptions{wait: 300 * time.Millisecond, opts: cache.Options{ShortTTL: time.Hour}})
	for _, p := range []string{"/v1/programs/" + f.a, "/v1/programs?category=drama", "/v1/search?q=noir", "/v1/categories"} {
		if res := get(t, s.app, p); res.status != 200 || res.header.Get("Cache-Control") == "private, no-cache" {
			t.Fatalf("%s: %d %q", p, res.status, res.header.Get("Cache-Control"))
		}
	}
	token := func(streamID string, version, position int64) string {
		return s.tokens.Sign(api.WritePoint{StreamID: streamID, Version: version, Position: position})
	}
	// Not synced: the token's read waits for the projection as needed.
	res := w.Retitle(t, f.a, "Nordic Noir: The Return")
	tok := token(res.StreamID, res.Version, res.Position)
	for _, p := range []string{"/v1/programs/" + f.a, "/v1/programs?category=drama", "/v1/search?q=noir", "/v1/trending"} {
		r := get(t, s.app, p, api.HeaderConsistencyToken, tok)
		if r.status != 200 || !strings.Contains(r.body, "The Return") || r.header.Get("Cache-Control") != "private, no-cache" {
			t.Errorf("%s with the token: %d %q %s", p, r.status, r.header.Get("Cache-Control"), r.body)
		}
		// Lists are checked against a checkpoint, which then covers the write; a
		// document proven by its version may come from a sink whose recorded
		// position still trails it (the header is informational).
		if pos, _ := strconv.ParseInt(r.header.Get("X-Projection-Position"), 10, 64); pos < res.Position && p != "/v1/programs/"+f.a {
			t.Errorf("%s: X-Projection-Position %d below the write's %d", p, pos, res.Position)
		}
	}
	// A new program and another program's token: the catalog row of the token's
	// program decides.
	id, created := w.CreateProgram(t, readmodeltest.Program{Title: "Brand New", Category: "drama", Publish: true})
	tok = token(created.StreamID, created.Version, created.Position)
	for _, p := range []string{"/v1/programs/" + id, "/v1/programs?category=drama", "/v1/categories", "/v1/search?q=brand"} {
		if r := get(t, s.app, p, api.HeaderConsistencyToken, tok); r.status != 200 ||
			(p != "/v1/categories" && !strings.Contains(r.body, "Brand New")) || (p == "/v1/categories" && !strings.Contains(r.body, `"drama","program_count":2`)) {
			t.Errorf("%s with the new program's token: %d %s", p, r.status, r.body)
		}
	}
	// A write that never happens: 503 after the bounded wait.
	never := token("program-"+f.a, 1_000_000, math.MaxInt64/2)
	start := time.Now()
	r := get(t, s.app, "/v1/programs/"+f.a, api.HeaderConsistencyToken, never)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("never-landing write: %d %s", r.status, r.body)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("the wait took %s, want about the 300 ms bound", d)
	}
	if r := get(t, s.app, "/v1/programs/"+f.a, api.HeaderConsistencyToken, "forged.token"); r.status != http.StatusBadRequest {
		t.Errorf("forged token: %d", r.status)
	}
	// The cached answer older than the write is not served to a token.
	if r := get(t, s.app, "/v1/programs/"+f.b, api.HeaderConsistencyToken, token("program-"+f.b, 1, 1)); r.status != 200 {
		t.Errorf("an old write's token: %d", r.status)
	}
}

// TestRedisServerGoesAway: the query side's Redis connection breaks (the server
// goes away) and comes back: reads keep answering, without a 5xx, from
// PostgreSQL; the caches stop trusting themselves while invalidations cannot arrive,
// and trust them again once the subscription is back.
func TestRedisServerGoesAway(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := populate(t, w)
	px := newProxy(t)
	s := newStack(t, w, stackOptions{redisAddr: px.addr, opts: cache.Options{ShortTTL: 50 * time.Millisecond}})
	waitFor(t, "the subscription through the proxy", s.cached.Healthy)
	for _, e := range endpoints(f) {
		check(t, "before", e, get(t, s.app, e.path))
	}
	px.down()
	waitFor(t, "the subscription to notice", func() bool { return !s.cached.Healthy() })
	for round := range 3 {
		for _, e := range endpoints(f) {
			check(t, fmt.Sprintf("redis gone, round %d", round), e, get(t, s.app, e.path))
		}
	}
	// A change while Redis is unreachable shows within the short lifetime.
	w.Sync(t, w.Retitle(t, f.b, "Deep Sea Two"))
	waitFor(t, "the change through PostgreSQL", func() bool {
		return strings.Contains(get(t, s.app, "/v1/programs/"+f.b).body, "Deep Sea Two")
	})
	px.up()
	waitFor(t, "the subscription to come back", s.cached.Healthy)
	hits := s.counters.Get(cache.LayerRedis, cache.ResultHit)
	page := 0
	waitFor(t, "reads from Redis again", func() bool {
		page++ // a new key each time: a miss of the in-process cache
		get(t, s.app, fmt.Sprintf("/v1/programs/%s/episodes?page=%d", f.a, page))
		return s.counters.Get(cache.LayerRedis, cache.ResultHit) > hits
	})
	for _, e := range endpoints(f) {
		check(t, "after", e, get(t, s.app, e.path))
	}
}

// TestSingleflight: concurrent misses of one key load it once.
func TestSingleflight(t *testing.T) {
	t.Parallel()
	slow := &slowPrograms{release: make(chan struct{})}
	inner, err := app.NewDiscovery(app.DiscoveryDeps{Programs: slow, Episodes: slow, Episode: slow, Browse: slow, Categories: slow,
		Search: slow, Rankings: slow, Checkpoints: slow}, app.DiscoveryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(inner, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			a, err := c.ProgramByID(context.Background(), app.ProgramByID{ID: slowID})
			if err == nil && !strings.Contains(string(a.Body), slowID) {
				err = fmt.Errorf("body %s", a.Body)
			}
			errs <- err
		})
	}
	waitFor(t, "the first load", func() bool { return slow.calls() == 1 })
	time.Sleep(20 * time.Millisecond) // let the other 63 pile up behind it
	close(slow.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := slow.calls(); n != 1 {
		t.Errorf("%d loads for 64 concurrent misses", n)
	}
	// A cancelled first caller does not fail the others: the load is detached.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.ProgramByID(ctx, app.ProgramByID{ID: "0190f1f4-0000-7000-8000-000000000bbb"}); err != nil && !strings.Contains(err.Error(), "not found") {
		t.Errorf("load under a cancelled context: %v", err)
	}
}

const slowID = "0190f1f4-0000-7000-8000-000000000aaa"

type slowPrograms struct {
	mu      sync.Mutex
	n       int
	release chan struct{}
}

func (s *slowPrograms) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *slowPrograms) Program(ctx context.Context, id string, _ *app.WritePoint) (*app.Program, int64, app.Snapshot, error) {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	if id != slowID {
		return nil, 0, app.Snapshot{Includes: true}, ctx.Err()
	}
	<-s.release
	return &app.Program{ID: id, Title: "slow", Version: 1}, 1, app.Snapshot{Source: app.SourcePostgres, Includes: true}, nil
}

func (s *slowPrograms) Programs(context.Context, []string, *app.WritePoint) (map[string]*app.Program, app.Snapshot, error) {
	return nil, app.Snapshot{Includes: true}, nil
}

func (s *slowPrograms) Episodes(context.Context, string, *app.WritePoint) ([]app.Episode, bool, app.Snapshot, error) {
	return nil, false, app.Snapshot{Includes: true}, nil
}

func (s *slowPrograms) Episode(context.Context, string, *app.WritePoint) (*app.Episode, string, app.Snapshot, error) {
	return nil, "", app.Snapshot{Includes: true}, nil
}

func (s *slowPrograms) Browse(context.Context, app.BrowseFilter, *app.WritePoint) ([]app.Program, int, app.Snapshot, error) {
	return nil, 0, app.Snapshot{Includes: true}, nil
}

func (s *slowPrograms) Categories(context.Context, *app.WritePoint) ([]app.Category, app.Snapshot, error) {
	return nil, app.Snapshot{Includes: true}, nil
}

func (s *slowPrograms) Search(context.Context, app.SearchQuery, *app.WritePoint) (app.SearchHits, app.Snapshot, error) {
	return app.SearchHits{}, app.Snapshot{Includes: true}, nil
}

func (s *slowPrograms) Ranked(context.Context, string, string, int, int) ([]string, int, error) {
	return nil, 0, nil
}

func (s *slowPrograms) Checkpoints(context.Context) (map[string]int64, error) { return nil, nil }

// TestWarm loads the top programs so that the first reads are memory hits.
func TestWarm(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var ids []string
	var last int64
	for i := range 25 {
		id, res := w.CreateProgram(t, readmodeltest.Program{Title: fmt.Sprintf("Program %02d", i), Publish: true})
		ids, last = append(ids, id), res.Position
	}
	w.SyncPosition(t, last)
	s := newStack(t, w, stackOptions{})
	n, err := s.cached.Warm(context.Background(), 1000)
	if err != nil || n != 25 {
		t.Fatalf("Warm = %d, %v; want 25", n, err)
	}
	s.cached.ResetStats()
	for _, id := range ids {
		if r := get(t, s.app, "/v1/programs/"+id); r.status != 200 {
			t.Fatalf("%s: %d", id, r.status)
		}
	}
	if st := s.cached.Stats(); st.Requests != 25 || st.Memory != 25 || st.HitRate() != 1 {
		t.Errorf("after warming: %+v", st)
	}
}

// TestWithoutInvalidationsEntriesLiveShort: with Redis off nothing can invalidate
// the in-process cache, so every entry lives the short TTL.
func TestWithoutInvalidationsEntriesLiveShort(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := populate(t, w)
	s := newStack(t, w, stackOptions{redisAddr: "off", opts: cache.Options{ShortTTL: 100 * time.Millisecond}})
	if !strings.Contains(get(t, s.app, "/v1/programs/"+f.a).body, "Nordic Noir") {
		t.Fatal("no program")
	}
	w.Sync(t, w.Retitle(t, f.a, "Retitled"))
	waitFor(t, "the short TTL to pass", func() bool { return strings.Contains(get(t, s.app, "/v1/programs/"+f.a).body, "Retitled") })
}

func TestPositionsAndMetrics(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := populate(t, w)
	reg := prometheus.NewRegistry()
	prom, err := cache.NewPrometheus(reg)
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, w, stackOptions{opts: cache.Options{Metrics: prom}})
	var prev int64
	for i := range 5 {
		r := get(t, s.app, "/v1/programs/"+f.a)
		pos, err := strconv.ParseInt(r.header.Get("X-Projection-Position"), 10, 64)
		if err != nil || pos < prev || pos < f.last {
			t.Fatalf("request %d: X-Projection-Position %q after %d (write at %d)", i, r.header.Get("X-Projection-Position"), prev, f.last)
		}
		prev = pos
	}
	// Options.Metrics is replaced by the stack's counters; a Tee sends both.
	tee := cache.Tee(prom, &cache.Counters{}, nil)
	tee.CacheRequest(cache.LayerMemory, cache.ResultHit)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range families {
		if mf.GetName() == "mediamesh_cache_requests_total" {
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				found = found || (labels["layer"] == "memory" && labels["result"] == "hit" && m.GetCounter().GetValue() == 1)
			}
		}
	}
	if !found {
		t.Error("mediamesh_cache_requests_total{layer=memory,result=hit} not counted")
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(get(t, s.app, "/v1/categories").body), &body); err == nil {
		t.Error("categories is not a bare array")
	}
}
