package bench_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/infra/ratelimit"
	"github.com/mediamesh/mediamesh/infra/redis/redistest"
)

// serveQuery is what the composition root's Serve does: the real api over the
// service, on 127.0.0.1.
func serveQuery(t testing.TB) func(ctx context.Context, svc bench.QueryService) (string, func(), error) {
	return func(ctx context.Context, svc bench.QueryService) (string, func(), error) {
		lim, err := ratelimit.New(nil, ratelimit.Options{})
		if err != nil {
			return "", nil, err
		}
		f := api.New(api.Config{ConsistencySecret: []byte("0123456789abcdef0123456789abcdef")},
			api.Deps{Discovery: svc, RateLimiter: lim, Logger: slog.New(slog.DiscardHandler)})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		go func() { _ = f.Listener(ln) }()
		return "http://" + ln.Addr().String(), func() { _ = f.Shutdown(); lim.Close() }, nil
	}
}

// TestQuerySuite runs the suite on a small catalog: every result is there, with
// its baseline and targets, and no request failed.
func TestQuerySuite(t *testing.T) {
	t.Parallel()
	_, url := pgtest.NewDB(t)
	rc := redistest.Client(t)
	res, err := bench.Query(context.Background(), bench.QueryConfig{
		DatabaseURL: url, Redis: rc, Serve: serveQuery(t), Programs: 500, Episodes: 2000, Searches: 100,
		Load: bench.Load{Concurrency: 4, Warmup: 200 * time.Millisecond, Duration: 300 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]bench.Result{}
	for _, r := range res {
		byName[r.Name] = r
		if r.Count == 0 || r.Errors != 0 || r.P99Ms == nil {
			t.Errorf("%s: %d requests, %d errors (%s)", r.Name, r.Count, r.Errors, r.Notes)
		}
	}
	for name, targets := range map[string]int{"mix": 3, "by_id": 1, "by_id_uncached": 2, "search_uncached": 2} {
		r, ok := byName[name]
		if !ok || len(r.Targets) != targets {
			t.Errorf("%s: missing or %d targets", name, len(r.Targets))
		}
	}
	if r := byName["mix"]; r.HitRate == nil || *r.HitRate < 0.5 || r.Baseline == nil || r.Ratio == nil {
		t.Errorf("mix: hit rate %v, baseline %v", r.HitRate, r.Baseline)
	}
	if r := byName["by_id"]; r.Baseline == nil || r.Ratio == nil {
		t.Errorf("by_id without a baseline")
	}
	doc := bench.NewDocument("query")
	doc.Results = res
	if _, err := doc.Marshal(); err != nil {
		t.Fatalf("the results do not validate: %v", err)
	}
}

// BenchmarkQuerySuite runs the full suite (100,000 programs, 1,000,000 episodes)
// once and logs the summary: `mediamesh bench query` is the real entry point; this
// is for running it from the package while the command is being wired.
//
//	MEDIAMESH_BENCH_DURATION=8s go test ./infra/bench -run '^$' -bench QuerySuite -benchtime 1x
func BenchmarkQuerySuite(b *testing.B) {
	_, url := pgtest.NewDB(b)
	rc := redistest.Client(b)
	d := 8 * time.Second
	if v, err := time.ParseDuration(os.Getenv("MEDIAMESH_BENCH_DURATION")); err == nil {
		d = v
	}
	conc, programs, episodes := 32, 0, 0
	if v, err := strconv.Atoi(os.Getenv("MEDIAMESH_BENCH_CONCURRENCY")); err == nil {
		conc = v
	}
	if v, err := strconv.Atoi(os.Getenv("MEDIAMESH_BENCH_PROGRAMS")); err == nil {
		programs, episodes = v, 10*v
	}
	for range b.N {
		res, err := bench.Query(context.Background(), bench.QueryConfig{
			DatabaseURL: url, Redis: rc, Serve: serveQuery(b), Programs: programs, Episodes: episodes,
			Load: bench.Load{Concurrency: conc, Warmup: 3 * time.Second, Duration: d, MaxOps: 10_000_000, Progress: os.Stderr},
		})
		if err != nil {
			b.Fatal(err)
		}
		doc := bench.NewDocument("query")
		doc.Results = res
		if err := bench.WriteSummary(os.Stderr, doc); err != nil {
			b.Fatal(err)
		}
		if path := os.Getenv("MEDIAMESH_BENCH_JSON"); path != "" {
			if err := doc.WriteFile(path); err != nil {
				b.Fatal(err)
			}
		}
	}
}
