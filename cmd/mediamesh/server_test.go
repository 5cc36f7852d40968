package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/search"
)

// logWatcher is a log writer that hands the URL of the "listening" record to
// listening, so a test learns the ephemeral port the way an operator would.
type logWatcher struct {
	syncBuffer
	mu        sync.Mutex
	partial   []byte
	listening chan string
}

func newLogWatcher() *logWatcher { return &logWatcher{listening: make(chan string, 1)} }

func (w *logWatcher) Write(p []byte) (int, error) {
	w.syncBuffer.Write(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		var rec struct {
			Msg string `json:"msg"`
			URL string `json:"url"`
		}
		if json.Unmarshal(w.partial[:i], &rec) == nil && rec.Msg == "listening" {
			select {
			case w.listening <- rec.URL:
			default:
			}
		}
		w.partial = w.partial[i+1:]
	}
}

// serverVars is the environment of a server on the test database url.
func serverVars(t *testing.T, dbURL string) map[string]string {
	t.Helper()
	return map[string]string{
		config.KeyDatabaseURL:     dbURL,
		config.KeyHTTPAddr:        "127.0.0.1:0",
		config.KeyDataDir:         t.TempDir(),
		config.KeyRedisURL:        "off",
		config.KeyShutdownTimeout: "5s",
	}
}

// startServe runs `mediamesh serve` in-process and returns its base URL, a stop
// function that shuts it down and returns its exit code, and its log.
func startServe(t *testing.T, vars map[string]string, args ...string) (string, func() int, *logWatcher) {
	t.Helper()
	logs := newLogWatcher()
	e := newTestEnv(vars).env
	e.stderr = logs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, e, append([]string{"serve"}, args...)) }()
	var base string
	select {
	case base = <-logs.listening:
	case code := <-done:
		cancel()
		t.Fatalf("serve exited with %d before listening:\n%s", code, logs.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("serve did not log \"listening\" within 60 s:\n%s", logs.String())
	}
	var once sync.Once
	code := -1
	stop := func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("serve did not stop within 30 s of SIGTERM:\n%s", logs.String())
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return base, stop, logs
}

// call sends one request and returns the status, headers and body.
func call(t *testing.T, method, u, token, body string) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func mintToken(t *testing.T, vars map[string]string, role string) string {
	t.Helper()
	te := newTestEnv(vars)
	if code := runCmd(t, te, "token", "--role", role, "--subject", "test-"+role); code != 0 {
		t.Fatalf("token: exit %d: %s", code, te.stderr)
	}
	return strings.TrimSpace(te.stdout.String())
}

// TestServeCompositionRoot runs the real composition root against a fresh database,
// once per available role: it migrates, serves health, commands and editorial reads
// with a token minted by `mediamesh token`, logs its configuration redacted, and
// stops gracefully on SIGTERM. With --role all it also runs the projections, so the
// editorial list answers a read-your-writes request.
func TestServeCompositionRoot(t *testing.T) {
	t.Parallel()
	for _, role := range []string{"all", "command"} {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			pool, dbURL := pgtest.NewDB(t)
			vars := serverVars(t, dbURL)
			vars[config.KeyS3SecretKey] = "never-log-this-secret"
			base, stop, logs := startServe(t, vars, "--role", role)

			for _, path := range []string{"/health/live", "/health/ready", "/openapi.json"} {
				if code, _, body := call(t, "GET", base+path, "", ""); code != http.StatusOK {
					t.Errorf("GET %s: %d %s", path, code, body)
				}
			}
			editor := mintToken(t, vars, "editor")
			code, hdr, body := call(t, "POST", base+"/v1/programs", editor, `{"title":"Wired","category":"documentary","language":"en"}`)
			if code != http.StatusCreated {
				t.Fatalf("POST /v1/programs: %d %s", code, body)
			}
			var created struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(body, &created); err != nil || created.ID == "" {
				t.Fatalf("create response %s: %v", body, err)
			}
			if loc := hdr.Get("Location"); loc != "/v1/cms/programs/"+created.ID {
				t.Errorf("Location %q", loc)
			}
			code, hdr, body = call(t, "POST", base+"/v1/programs/"+created.ID+"/publish", editor, "")
			if code != http.StatusOK {
				t.Fatalf("publish: %d %s", code, body)
			}
			code, _, body = call(t, "GET", base+"/v1/cms/programs/"+created.ID, editor, "")
			if code != http.StatusOK || !strings.Contains(string(body), `"status":"published"`) {
				t.Errorf("GET /v1/cms/programs/%s: %d %s", created.ID, code, body)
			}
			if code, _, _ := call(t, "POST", base+"/v1/programs", "", `{"title":"x","category":"a","language":"en"}`); code != http.StatusUnauthorized {
				t.Errorf("command without a token: %d", code)
			}
			if role == "all" {
				token := hdr.Get("X-Consistency-Token")
				if token == "" {
					t.Fatal("publish response has no X-Consistency-Token")
				}
				req, _ := http.NewRequest("GET", base+"/v1/cms/programs?status=published", nil)
				req.Header.Set("Authorization", "Bearer "+editor)
				req.Header.Set("X-Consistency-Token", token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				list, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(list), created.ID) {
					t.Errorf("GET /v1/cms/programs with the publish's consistency token: %d %s\n%s", resp.StatusCode, list, logs.String())
				}
				// The search projection indexes the published program (a bounded wait:
				// the runtime applies it within milliseconds).
				idx, err := searchpg.New(pool)
				if err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(15 * time.Second)
				for {
					res, err := idx.Search(context.Background(), search.IndexName(search.Version), search.Query{Text: "wired"})
					if err == nil && len(res.IDs) == 1 && res.IDs[0] == created.ID {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the search index does not find the published program: %+v, %v\n%s", res, err, logs.String())
					}
					time.Sleep(20 * time.Millisecond)
				}
			} else {
				// --role command runs no projections: the search state stays empty.
				var n int
				if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM search_state_v1").Scan(&n); err != nil || n != 0 {
					t.Errorf("search state under --role command: %d rows, %v", n, err)
				}
			}

			if code := stop(); code != 0 {
				t.Errorf("serve exit code %d after SIGTERM:\n%s", code, logs.String())
			}
			out := logs.String()
			for _, want := range []string{`"msg":"migrations applied"`, `"msg":"starting mediamesh"`, `"database_url":"postgres://`, `"s3_secret_key":"[REDACTED]"`, `"msg":"stopped"`} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %s:\n%s", want, out)
				}
			}
			if strings.Contains(out, "never-log-this-secret") {
				t.Error("a secret reached the log")
			}
		})
	}
}

// TestServeUnreachableDatabase: a database that cannot be reached fails the start
// with a message naming it, instead of serving a half-working API.
func TestServeUnreachableDatabase(t *testing.T) {
	t.Parallel()
	vars := serverVars(t, "postgres://postgres@127.0.0.1:1/mediamesh?sslmode=disable&connect_timeout=2")
	te := newTestEnv(vars)
	if code := runCmd(t, te, "serve"); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(te.stderr.String(), "primary database") {
		t.Errorf("stderr: %s", te.stderr)
	}
}

// scratchName returns a database name unique to this test run.
func scratchName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// withDatabase returns the test server's URL naming database name.
func withDatabase(t *testing.T, name string) string {
	t.Helper()
	u, err := url.Parse(pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// dropDatabase drops name at the end of t.
func dropDatabase(t *testing.T, name string) {
	t.Helper()
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, pgtest.ServerURL())
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.ServerURL())
	if err != nil {
		t.Fatalf("PostgreSQL is not reachable (%v). Start it with: %s", err, pgtest.StartHint)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestMigrateCreatesAndReports: `migrate up` creates a missing database and applies
// every migration; `migrate status` then lists them all as applied.
func TestMigrateCreatesAndReports(t *testing.T) {
	t.Parallel()
	name := scratchName("mm_test_migrate_")
	dropDatabase(t, name)
	vars := map[string]string{config.KeyDatabaseURL: withDatabase(t, name)}
	te := newTestEnv(vars)
	if code := runCmd(t, te, "migrate", "status"); code != 1 {
		t.Errorf("status of a missing database: exit %d, want 1", code)
	}
	if databaseExists(t, name) {
		t.Fatal("migrate status created the database")
	}
	te = newTestEnv(vars)
	if code := runCmd(t, te, "migrate", "up"); code != 0 {
		t.Fatalf("migrate up: exit %d: %s", code, te.stderr)
	}
	te = newTestEnv(vars)
	if code := runCmd(t, te, "migrate", "status"); code != 0 {
		t.Fatalf("migrate status: exit %d: %s", code, te.stderr)
	}
	out := te.stdout.String()
	files, _ := filepath.Glob("../../migrations/*.sql")
	if len(files) == 0 || strings.Count(out, "applied") != len(files) || strings.Contains(out, "pending") {
		t.Errorf("status lists %d applied for %d files:\n%s", strings.Count(out, "applied"), len(files), out)
	}
}

// TestSeedIsIdempotent: seed loads the demo catalog through the ingest path, every
// program published and given a poster, and seeding twice appends nothing new.
func TestSeedIsIdempotent(t *testing.T) {
	t.Parallel()
	pool, dbURL := pgtest.NewDB(t)
	vars := serverVars(t, dbURL)
	count := func() (events, published, posters int) {
		ctx := context.Background()
		if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE type = 'mediamesh.program.published.v1'),
			count(*) FILTER (WHERE type = 'mediamesh.asset.uploaded.v1' AND data->>'kind' = 'poster') FROM eventstore_events`).Scan(&events, &published, &posters); err != nil {
			t.Fatal(err)
		}
		return
	}
	seed := func() {
		t.Helper()
		te := newTestEnv(vars)
		if code := runCmd(t, te, "seed", "--programs", "3"); code != 0 {
			t.Fatalf("seed: exit %d: %s", code, te.stderr)
		}
	}
	var after []int
	for range 2 {
		seed()
		n, published, posters := count()
		if published != 3 || posters != 3 {
			t.Errorf("%d programs published and %d posters uploaded, want 3 and 3", published, posters)
		}
		after = append(after, n)
	}
	if after[0] == 0 || after[1] != after[0] {
		t.Errorf("events after the first and second seed: %v, want the same non-zero count", after)
	}

	// The database kept, the data directory new (another checkout): the posters'
	// blobs are gone, so the seed uploads them again, and their originals are there.
	vars[config.KeyDataDir] = t.TempDir()
	seed()
	if _, _, posters := count(); posters != 6 {
		t.Errorf("%d posters uploaded after the data directory was lost, want 3 more (6)", posters)
	}
	originals, err := filepath.Glob(filepath.Join(vars[config.KeyDataDir], "blobs", "originals", "*"))
	if err != nil || len(originals) != 3 {
		t.Errorf("originals in the new data directory: %v %v, want 3", originals, err)
	}
}

// TestBenchAppendShort runs the append suite briefly and checks its document.
func TestBenchAppendShort(t *testing.T) {
	t.Parallel()
	name := scratchName("mm_test_bench_")
	dropDatabase(t, name)
	vars := serverVars(t, pgtest.ServerURL())
	out := filepath.Join(t.TempDir(), "bench.json")
	te := newTestEnv(vars)
	code := runCmd(t, te, "bench", "append", "--json", out, "--duration", "300ms", "--warmup", "100ms", "--concurrency", "2", "--database", name)
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, te.stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := bench.Validate(b); err != nil {
		t.Fatalf("document: %v\n%s", err, b)
	}
	var doc bench.Document
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]bench.Result{}
	for _, r := range doc.Results {
		got[r.Name] = r
	}
	for _, name := range []string{"http_commands", "store_batched", "insert_single_row"} {
		r, ok := got[name]
		if !ok || r.Count == 0 || r.Errors != 0 || r.ThroughputPerS <= 0 || r.P99Ms == nil {
			t.Errorf("result %s: %+v", name, r)
		}
	}
	for _, name := range []string{"http_commands", "store_batched"} {
		r := got[name]
		if r.Baseline == nil || r.Baseline.Name != "insert_single_row" || r.Ratio == nil || len(r.Targets) == 0 {
			t.Errorf("result %s lacks baseline, ratio or targets: %+v", name, r)
		}
	}
	if got["store_batched"].Count%appendBatchSize != 0 {
		t.Errorf("store_batched counted %d events, not whole batches", got["store_batched"].Count)
	}
	if !strings.Contains(te.stdout.String(), "http_commands") {
		t.Errorf("no summary on stdout: %s", te.stdout)
	}
	if !strings.Contains(te.stderr.String(), "store_batched:") {
		t.Errorf("no progress on stderr: %s", te.stderr)
	}
	if databaseExists(t, name) {
		t.Errorf("scratch database %s was not dropped", name)
	}
}

// TestBenchNeverTouchesTheConfiguredDatabase: the scratch database cannot be the
// configured one, nor a system database.
func TestBenchNeverTouchesTheConfiguredDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dbURL, database, want string
	}{
		{"postgres://postgres@127.0.0.1:1/mediamesh_bench?sslmode=disable", "mediamesh_bench", "is the configured database"},
		{"postgres://postgres@127.0.0.1:1/mediamesh?sslmode=disable", "postgres", "cannot be a scratch database"},
		{"postgres://postgres@127.0.0.1:1/mediamesh?sslmode=disable", "template1", "cannot be a scratch database"},
	}
	for _, tt := range tests {
		te := newTestEnv(map[string]string{config.KeyDatabaseURL: tt.dbURL, config.KeyDataDir: t.TempDir()})
		if code := runCmd(t, te, "bench", "append", "--database", tt.database, "--duration", "1s"); code != 1 {
			t.Errorf("--database %s: exit %d, want 1", tt.database, code)
		}
		if !strings.Contains(te.stderr.String(), tt.want) {
			t.Errorf("--database %s: stderr lacks %q: %s", tt.database, tt.want, te.stderr)
		}
	}
}
