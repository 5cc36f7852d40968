package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/search"
	"github.com/mediamesh/mediamesh/query/app"
	"github.com/mediamesh/mediamesh/query/cache"
	"github.com/mediamesh/mediamesh/query/cache/redisstore"
)

// Targets of the issue "Discovery query API", point 8.
const (
	TargetMixPerS               = 14000
	TargetMixP99Ms              = 10
	TargetMixHitRate            = 0.95
	TargetByIDRatio             = 0.6
	TargetByIDUncachedPerS      = 10000
	TargetByIDUncachedP99Ms     = 20
	TargetSearchUncachedPerS    = 500
	TargetSearchUncachedP99Ms   = 100
	defaultQueryPrograms        = 100_000
	defaultQueryEpisodes        = 1_000_000
	queryZipfS                  = 1.1
	queryWarmPrograms           = 1000
	queryBrowseCombinationLimit = 1200
	defaultQuerySearches        = 2000
	// primeConcurrency bounds the warm-up's first pass, which is all cache
	// misses: more at once only queue in PostgreSQL and time out.
	primeConcurrency = 4
)

// QueryService is the discovery service the suite serves: the methods of
// query/app.Discovery and query/cache.Discovery (and of api.Discovery, which the
// composition root's Serve passes it to).
type QueryService interface {
	ProgramByID(ctx context.Context, q app.ProgramByID) (app.Answer, error)
	ProgramEpisodes(ctx context.Context, q app.ProgramEpisodes) (app.Answer, error)
	EpisodeByID(ctx context.Context, q app.EpisodeByID) (app.Answer, error)
	BrowsePrograms(ctx context.Context, q app.BrowsePrograms) (app.Answer, error)
	Search(ctx context.Context, q app.Search) (app.Answer, error)
	Trending(ctx context.Context, q app.Ranked) (app.Answer, error)
	Popular(ctx context.Context, q app.Ranked) (app.Answer, error)
	Categories(ctx context.Context, q app.Categories) (app.Answer, error)
	RecordPlay(ctx context.Context, q app.RecordPlay) error
	CurrentPosition() int64
}

// QueryConfig configures Query. Zero values take the defaults.
type QueryConfig struct {
	// DatabaseURL is a migrated scratch database; Query fills its catalog, search
	// and engagement tables.
	DatabaseURL string
	// Redis is the Redis the caches use; the suite writes the catalog documents and
	// rankings under a namespace of its own and deletes them at the end.
	Redis goredis.UniversalClient
	// Serve starts the real HTTP app (api.New, keep-alive, compression) over svc on
	// 127.0.0.1 and returns its base URL ("http://127.0.0.1:port") and a function
	// that stops it. The composition root provides it: this package cannot import
	// the api.
	Serve func(ctx context.Context, svc QueryService) (baseURL string, stop func(), err error)
	// Programs and Episodes size the generated catalog (100,000 and 1,000,000).
	Programs, Episodes int
	// Seed makes the catalog and the request streams reproducible (1).
	Seed uint64
	// Searches is how many distinct searches (and at most how many distinct
	// browse lists) the mix draws from (2,000).
	Searches int
	// Load bounds every measured result (Concurrency, Warmup, Duration, MaxOps,
	// Progress); the warm-up runs the same requests unmeasured.
	Load Load
	// Logger receives the cache's warnings (discarded when nil).
	Logger *slog.Logger
}

// Query runs `mediamesh bench query`: it generates the catalog (COPY into the read
// models and straight into Redis), then measures, against the real app on
// 127.0.0.1 with an in-process keep-alive load generator:
//
//   - mix: 60% search and discovery (search, trending, popular, categories), 25%
//     browse, 15% by id (programs, episode lists, episodes), each drawn from a Zipf
//     (s = 1.1) distribution, with the caches on; hit_rate is the share of
//     requests answered without PostgreSQL;
//   - by_id: cached program reads only;
//   - by_id_uncached and search_uncached: the same app over the read models alone
//     (no in-process cache, no Redis);
//
// and, in the same run, a bare fiber handler returning a fixed body of the mix's
// (and by_id's) mean size as the baseline.
func Query(ctx context.Context, c QueryConfig) ([]Result, error) {
	if c.Programs <= 0 {
		c.Programs = defaultQueryPrograms
	}
	if c.Episodes <= 0 {
		c.Episodes = defaultQueryEpisodes
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Searches <= 0 {
		c.Searches = defaultQuerySearches
	}
	if c.Load.Progress == nil {
		c.Load.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Redis == nil || c.Serve == nil || c.DatabaseURL == "" {
		return nil, errors.New("bench query: DatabaseURL, Redis and Serve are required")
	}
	conns := int32(max(16, c.Load.Concurrency+8))
	pcfg, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("bench query: %w", err)
	}
	pcfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("bench query: %w", err)
	}
	defer pool.Close()

	ns := fmt.Sprintf("bench-%d-%d:", time.Now().UnixNano(), c.Seed)
	keys := cache.DefaultKeys.WithNamespace(ns)
	defer clearRedis(context.WithoutCancel(ctx), c.Redis, ns)

	fx := newQueryFixture(c.Seed, c.Programs, c.Episodes)
	start := time.Now()
	fmt.Fprintf(c.Load.Progress, "query: generating %d programs and %d episodes\n", c.Programs, c.Episodes)
	if err := fx.load(ctx, pool, c.Redis, keys, c.Load.Progress); err != nil {
		return nil, err
	}
	fmt.Fprintf(c.Load.Progress, "query: catalog loaded in %s\n", time.Since(start).Round(time.Millisecond))

	svc, err := newQueryServices(ctx, pool, c.Redis, keys, c.Logger)
	if err != nil {
		return nil, err
	}
	defer svc.stop()
	if n, err := svc.cached.Warm(ctx, queryWarmPrograms); err != nil {
		return nil, fmt.Errorf("bench query: warm: %w", err)
	} else {
		fmt.Fprintf(c.Load.Progress, "query: warmed %d programs\n", n)
	}

	cachedURL, stopCached, err := c.Serve(ctx, svc.cached)
	if err != nil {
		return nil, fmt.Errorf("bench query: serve: %w", err)
	}
	defer stopCached()
	uncachedURL, stopUncached, err := c.Serve(ctx, svc.uncached)
	if err != nil {
		return nil, fmt.Errorf("bench query: serve: %w", err)
	}
	defer stopUncached()

	gen := newRequestGen(fx, c.Seed, c.Searches)
	run := func(label, baseURL string, pick func(*worker) string, before func()) (Result, float64, error) {
		return runHTTP(ctx, c.Load, label, baseURL, func(i int) func() string {
			w := gen.worker(c.Seed, i)
			return func() string { return pick(w) }
		}, before)
	}

	// The warm-up of the mix first asks every distinct search and list once, in
	// popularity order, then runs the mix itself: what a cache that has been up for
	// a while holds.
	start = time.Now()
	universe := gen.universe()
	primeFailed, err := prime(ctx, cachedURL, universe, min(c.Load.Concurrency, primeConcurrency))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c.Load.Progress, "query: asked each of the %d searches and lists once in %s (%d failed)\n",
		len(universe), time.Since(start).Round(time.Millisecond), primeFailed)
	mix, mixSize, err := run("mix", cachedURL, (*worker).mix, svc.cached.ResetStats)
	if err != nil {
		return nil, err
	}
	// by_id measures the in-process cache: every program is loaded first.
	start = time.Now()
	all := make([]string, c.Programs)
	for i := range all {
		all[i] = fx.programID(i)
	}
	if _, err := svc.cached.WarmIDs(ctx, all); err != nil {
		return nil, fmt.Errorf("bench query: warm: %w", err)
	}
	fmt.Fprintf(c.Load.Progress, "query: loaded every program into the in-process cache in %s\n", time.Since(start).Round(time.Millisecond))
	mix.HitRate = ptr(round(svc.cached.Stats().HitRate(), 4))
	byID, byIDSize, err := run("by_id", cachedURL, (*worker).programByID, nil)
	if err != nil {
		return nil, err
	}
	byIDUncached, _, err := run("by_id_uncached", uncachedURL, (*worker).programByID, nil)
	if err != nil {
		return nil, err
	}
	searchUncached, _, err := run("search_uncached", uncachedURL, (*worker).search, nil)
	if err != nil {
		return nil, err
	}
	mixBase, err := runBare(ctx, c.Load, "bare_fiber_mix_size", int(mixSize))
	if err != nil {
		return nil, err
	}
	byIDBase, err := runBare(ctx, c.Load, "bare_fiber_by_id_size", int(byIDSize))
	if err != nil {
		return nil, err
	}

	mix.SetBaseline(BaselineOf(mixBase))
	mix.AddTarget("throughput_per_s", AtLeast, TargetMixPerS)
	mix.AddTarget("p99_ms", AtMost, TargetMixP99Ms)
	mix.AddTarget("hit_rate", AtLeast, TargetMixHitRate)
	mix.AddNote(fmt.Sprintf("warm-up: each of the %d distinct searches and lists asked once (%d failed), then the mix for the warm-up time", len(universe), primeFailed))
	mix.AddNote(fmt.Sprintf("60%% search/trending/popular/categories, 25%% browse, 15%% program, episode list and episode by id; Zipf s=%.1f; "+
		"mean body %.0f bytes; no Accept-Encoding (the baseline's body is the same size)", queryZipfS, mixSize))
	byID.SetBaseline(BaselineOf(byIDBase))
	byID.AddTarget("ratio", AtLeast, TargetByIDRatio)
	byID.AddNote(fmt.Sprintf("GET /v1/programs/{id}, Zipf over %d programs, all of them in the in-process cache; mean body %.0f bytes", c.Programs, byIDSize))
	byIDUncached.AddTarget("throughput_per_s", AtLeast, TargetByIDUncachedPerS)
	byIDUncached.AddTarget("p99_ms", AtMost, TargetByIDUncachedP99Ms)
	byIDUncached.AddNote("no in-process cache, no Redis: one PostgreSQL read per request")
	searchUncached.AddTarget("throughput_per_s", AtLeast, TargetSearchUncachedPerS)
	searchUncached.AddTarget("p99_ms", AtMost, TargetSearchUncachedP99Ms)
	searchUncached.AddNote(fmt.Sprintf("no caches: the PostgreSQL search index (full text; typos corrected through a trigram index of the title words) over %d programs, then the programs' rows", c.Programs))
	mixBase.AddNote("baseline of mix: a bare fiber handler returning a fixed body of the mix's mean size")
	byIDBase.AddNote("baseline of by_id: a bare fiber handler returning a fixed body of by_id's mean size")
	return []Result{mix, byID, byIDUncached, searchUncached, mixBase, byIDBase}, nil
}

func ptr[T any](v T) *T { return &v }

// queryServices are the cached and the uncached discovery services over the
// scratch database.
type queryServices struct {
	cached   *cache.Discovery
	uncached *app.Discovery
	stop     func()
}

func newQueryServices(ctx context.Context, pool *pgxpool.Pool, rc goredis.UniversalClient, keys cache.Keys, log *slog.Logger) (*queryServices, error) {
	router, err := readmodel.NewRouter(pool, nil, readmodel.RouterOptions{Logger: log})
	if err != nil {
		return nil, err
	}
	cat, err := readmodel.NewCatalog(router, readmodel.CatalogTables{})
	if err != nil {
		return nil, err
	}
	idx, err := readmodel.NewPostgresSearchIndex(router, search.IndexName(search.Version), func(db *pgxpool.Pool) (search.Reader, error) {
		return searchpg.New(db)
	})
	if err != nil {
		return nil, err
	}
	pgRanks, err := readmodel.NewRankings(router)
	if err != nil {
		return nil, err
	}
	store, err := redisstore.New(rc)
	if err != nil {
		return nil, err
	}
	counters := &cache.Counters{}
	remote := cache.NewBreaker(store, cache.BreakerOptions{})
	docs, err := cache.NewDocuments(remote, keys, cat, counters, log)
	if err != nil {
		return nil, err
	}
	ranks, err := cache.NewRankings(remote, keys, pgRanks, counters)
	if err != nil {
		return nil, err
	}
	inner, err := app.NewDiscovery(app.DiscoveryDeps{Programs: docs, Episodes: docs, Episode: docs, Browse: cat, Categories: cat,
		Search: idx, Rankings: ranks, Checkpoints: cat}, app.DiscoveryOptions{})
	if err != nil {
		return nil, err
	}
	cached, err := cache.New(inner, cache.Options{Remote: remote, Keys: keys, Metrics: counters, Logger: log})
	if err != nil {
		return nil, err
	}
	uncached, err := app.NewDiscovery(app.DiscoveryDeps{Programs: cat, Episodes: cat, Episode: cat, Browse: cat, Categories: cat,
		Search: idx, Rankings: pgRanks, Checkpoints: cat}, app.DiscoveryOptions{})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = cached.Run(rctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !cached.Healthy() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			return nil, errors.New("bench query: the cache's invalidation subscription did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &queryServices{cached: cached, uncached: uncached, stop: func() { cancel(); <-done }}, nil
}

// runHTTP drives GETs against baseURL under l, each worker drawing its paths from
// the picker newPicker makes for it, with a warm-up run first; before, when set,
// runs between the warm-up and the measurement. It returns the result and the mean
// body size.
func runHTTP(ctx context.Context, l Load, label, baseURL string, newPicker func(worker int) func() string, before func()) (Result, float64, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return Result{}, 0, fmt.Errorf("bench query: %w", err)
	}
	client := &fasthttp.HostClient{Addr: u.Host, MaxConns: l.Concurrency + 4, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		MaxIdleConnDuration: time.Minute}
	defer client.CloseIdleConnections()
	pickers := make([]func() string, max(l.Concurrency, 1))
	for i := range pickers {
		pickers[i] = newPicker(i)
	}
	var bytes, responses atomic.Int64
	op := func(ctx context.Context, worker int) (int, error) {
		path := pickers[worker]()
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		req.SetRequestURI(baseURL + path)
		if err := client.Do(req, res); err != nil {
			return 0, fmt.Errorf("GET %s: %w", path, err)
		}
		if code := res.StatusCode(); code != fasthttp.StatusOK {
			return 0, fmt.Errorf("GET %s: %d %s", path, code, res.Body())
		}
		bytes.Add(int64(len(res.Body())))
		responses.Add(1)
		return 1, nil
	}
	warm := l
	warm.Duration, warm.Warmup, warm.MaxOps, warm.Label = l.Warmup, 0, 0, label+" warm-up"
	if warm.Duration > 0 {
		Run(ctx, warm, op)
	}
	if before != nil {
		before()
	}
	bytes.Store(0)
	responses.Store(0)
	measure := l
	measure.Warmup, measure.Label = 0, label
	st := Run(ctx, measure, op)
	if ctx.Err() != nil {
		return Result{}, 0, ctx.Err()
	}
	return Measure(label, "requests", st), float64(bytes.Load()) / float64(max(responses.Load(), 1)), nil
}

// runBare measures a bare fiber handler returning a fixed body of size bytes
// (the baseline), with the same client and load.
func runBare(ctx context.Context, l Load, label string, size int) (Result, error) {
	body := make([]byte, max(size, 2))
	for i := range body {
		body[i] = 'x'
	}
	body[0], body[len(body)-1] = '"', '"'
	f := fiber.New(fiber.Config{DisableStartupMessage: true})
	f.Get("/bare", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Result{}, fmt.Errorf("bench query: %w", err)
	}
	go func() { _ = f.Listener(ln) }()
	defer func() { _ = f.Shutdown() }()
	res, _, err := runHTTP(ctx, l, label, "http://"+ln.Addr().String(), func(int) func() string { return func() string { return "/bare" } }, nil)
	return res, err
}

// prime asks every path once, concurrency at a time, and returns how many failed
// (after a retry): a warm-up, so a failure is reported, not fatal.
func prime(ctx context.Context, baseURL string, paths []string, concurrency int) (int, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return 0, fmt.Errorf("bench query: %w", err)
	}
	client := &fasthttp.HostClient{Addr: u.Host, MaxConns: concurrency, ReadTimeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var (
		next, failed atomic.Int64
		wg           sync.WaitGroup
	)
	for range max(concurrency, 1) {
		wg.Go(func() {
			req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(res)
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(paths) {
					return
				}
				req.SetRequestURI(baseURL + paths[i])
				ok := false
				for attempt := 0; attempt < 2 && !ok; attempt++ {
					ok = client.Do(req, res) == nil && res.StatusCode() == fasthttp.StatusOK
				}
				if !ok {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(failed.Load()), ctx.Err()
}

// clearRedis deletes the suite's keys.
func clearRedis(ctx context.Context, c goredis.UniversalClient, ns string) {
	iter := c.Scan(ctx, 0, ns+"*", 5000).Iterator()
	var batch []string
	flush := func() {
		if len(batch) == 0 {
			return
		}
		_, _ = c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, k := range batch {
				p.Unlink(ctx, k)
			}
			return nil
		})
		batch = batch[:0]
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) >= 5000 {
			flush()
		}
	}
	flush()
}

// requestGen holds what the suite's requests are drawn from.
type requestGen struct {
	fx      *queryFixture
	queries []string
	browse  []string
}

func newRequestGen(fx *queryFixture, seed uint64, searches int) *requestGen {
	g := &requestGen{fx: fx}
	rnd := rand.New(rand.NewPCG(seed, 99))
	// Search queries: a program's rarest title word, two of its words, or a typo;
	// the programs drawn by popularity, so popular programs' words are searched most.
	zp := rand.NewZipf(rnd, queryZipfS, 1, uint64(fx.programs-1))
	seen := map[string]bool{}
	for tries := 0; len(g.queries) < searches && tries < 100_000; tries++ {
		words := fx.titleWords(fx.popular(int(zp.Uint64())))
		var q string
		switch rnd.IntN(10) {
		case 0, 1, 2, 3, 4:
			q = fx.rarest(words)
		case 5, 6, 7:
			q = words[0]
			if len(words) > 1 {
				q += " " + words[1]
			}
		default:
			q = typo(rnd, fx.rarest(words))
		}
		if !seen[q] {
			seen[q] = true
			g.queries = append(g.queries, "/v1/search?q="+url.QueryEscape(q))
		}
	}
	// Browse combinations in a fixed order (the first are the most requested):
	// pages, categories, sorts, with and without a language; the whole catalog; tags.
	for _, page := range []int{1, 2, 3, 4, 5} {
		for _, cat := range fx.categories {
			for _, sort := range []string{"recent", "title"} {
				g.browse = append(g.browse, fmt.Sprintf("/v1/programs?category=%s&sort=%s&page=%d", cat, sort, page))
				for _, lang := range fx.languages[:3] {
					g.browse = append(g.browse, fmt.Sprintf("/v1/programs?category=%s&language=%s&sort=%s&page=%d", cat, lang, sort, page))
				}
			}
		}
		g.browse = append(g.browse, fmt.Sprintf("/v1/programs?page=%d", page), fmt.Sprintf("/v1/programs?sort=title&page=%d", page))
		for _, tag := range fx.tags[:20] {
			g.browse = append(g.browse, fmt.Sprintf("/v1/programs?tag=%s&page=%d", tag, page))
		}
	}
	if n := min(queryBrowseCombinationLimit, searches); len(g.browse) > n {
		g.browse = g.browse[:n]
	}
	return g
}

// universe lists every search and list of the mix once, the most requested
// first.
func (g *requestGen) universe() []string {
	var out []string
	for _, cat := range append([]string{""}, g.fx.categories...) {
		out = append(out, "/v1/trending?category="+cat+"&limit=20", "/v1/popular?category="+cat+"&limit=20")
	}
	out = append(out, "/v1/trending", "/v1/categories")
	n := max(len(g.queries), len(g.browse))
	for i := range n {
		if i < len(g.queries) {
			out = append(out, g.queries[i])
		}
		if i < len(g.browse) {
			out = append(out, g.browse[i])
		}
	}
	return out
}

// worker draws one load worker's requests: its own generator and Zipf samplers
// (which are not safe for concurrent use).
type worker struct {
	g                                     *requestGen
	r                                     *rand.Rand
	programs, queries, browse, categories *rand.Zipf
}

func (g *requestGen) worker(seed uint64, i int) *worker {
	r := rand.New(rand.NewPCG(seed, uint64(i)+1))
	z := func(n int) *rand.Zipf { return rand.NewZipf(r, queryZipfS, 1, uint64(n-1)) }
	return &worker{g: g, r: r, programs: z(g.fx.programs), queries: z(len(g.queries)), browse: z(len(g.browse)), categories: z(len(g.fx.categories))}
}

func (w *worker) program() int { return w.g.fx.popular(int(w.programs.Uint64())) }

func (w *worker) programByID() string { return "/v1/programs/" + w.g.fx.programID(w.program()) }

func (w *worker) search() string { return w.g.queries[w.queries.Uint64()] }

// mix is 60% search and discovery, 25% browse, 15% by id and episodes.
func (w *worker) mix() string {
	switch n := w.r.IntN(100); {
	case n < 42:
		return w.search()
	case n < 50:
		return "/v1/trending?category=" + w.g.fx.categories[w.categories.Uint64()] + "&limit=20"
	case n < 52:
		return "/v1/trending"
	case n < 57:
		return "/v1/popular?category=" + w.g.fx.categories[w.categories.Uint64()] + "&limit=20"
	case n < 60:
		return "/v1/categories"
	case n < 85:
		return w.g.browse[w.browse.Uint64()]
	case n < 93:
		return w.programByID()
	case n < 97:
		return "/v1/programs/" + w.g.fx.programID(w.program()) + "/episodes"
	default:
		p := w.program()
		return "/v1/episodes/" + w.g.fx.episodeID(w.g.fx.firstEpisode(p)+w.r.IntN(w.g.fx.episodesOf(p)))
	}
}

func typo(r *rand.Rand, w string) string {
	b := []rune(w)
	if len(b) < 5 {
		return w
	}
	i := 1 + r.IntN(len(b)-2)
	b[i], b[i+1] = b[i+1], b[i]
	return string(b)
}
