package documents_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	"github.com/mediamesh/mediamesh/infra/redis/redistest"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/documents"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is a migrated database, a namespaced key space and a flusher over them.
type env struct {
	pool    *pgxpool.Pool
	redis   goredis.UniversalClient
	store   *mmredis.Documents
	flusher *documents.Flusher
	proj    *catalog.Projection
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	c := redistest.Client(t)
	store, err := mmredis.NewDocuments(c, redistest.Keyspace(t, c), 0)
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWith(t, pool, c, store)
}

func newEnvWith(t *testing.T, pool *pgxpool.Pool, c goredis.UniversalClient, store documents.Store) *env {
	t.Helper()
	f, err := documents.New(pool, store, documents.Options{Logger: quiet, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{pool: pool, redis: c, flusher: f, proj: catalog.New(nil, catalog.WithDocuments())}
	if d, ok := store.(*mmredis.Documents); ok {
		e.store = d
	}
	return e
}

// apply feeds evs to the catalog (random batches, each its own transaction).
func (e *env) apply(t *testing.T, evs []events.Envelope, seed uint64) {
	t.Helper()
	pt.ApplyDirect(t, e.pool, e.proj, evs, seed, 40)
}

func (e *env) flush(t *testing.T) documents.Result {
	t.Helper()
	res, err := e.flusher.Flush(context.Background())
	if err != nil {
		t.Fatalf("flush: %v", err)
	}
	return res
}

// docs returns the documents in Redis, keys without their namespace.
func (e *env) docs(t *testing.T) map[string]string {
	t.Helper()
	base := e.store.Keys().Base()
	ns := strings.TrimSuffix(base, "mm:catalog:v1")
	out := map[string]string{}
	for k, v := range redistest.Dump(t, e.redis, base+":") {
		k = strings.TrimPrefix(k, ns)
		if strings.Contains(k, ":gen:") || strings.HasSuffix(k, ":position") {
			continue
		}
		out[k] = v
	}
	return out
}

func (e *env) get(t *testing.T, key string) (string, bool) {
	t.Helper()
	v, err := e.redis.Get(context.Background(), key).Result()
	if errors.Is(err, goredis.Nil) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// TestGoldenDocuments follows the golden program's life in Redis, checking the
// exact JSON of each document against hand-written expectations.
func TestGoldenDocuments(t *testing.T) {
	t.Parallel()
	golden := pt.Golden(t)
	const (
		pid = pt.GoldenProgramID
		eid = "0190d5a0-0000-7000-8000-0000000000e1"
	)
	ks := mmredis.CatalogKeyspace(1)
	program := func(title, desc, lang, tags, category string, count int, version int) string {
		return `{"id":"` + pid + `","title":"` + title + `","description":"` + desc + `","category":"` + category +
			`","language":"` + lang + `","tags":` + tags + `,"published_at":"2025-01-01T00:00:03Z","episode_count":` + itoa(count) +
			`,"images":{},"version":` + itoa(version) + `}`
	}
	const episode = `{"id":"` + eid + `","program_id":"` + pid + `","title":"Pilot (Director's Cut)","number":2,"season":3,` +
		`"description":"Longer.","duration_seconds":3600,"published_at":"2025-01-01T00:00:05Z","images":{}}`
	before := func(title, category string, count, version int) string {
		return program(title, "Cold cases, colder nights.", "en-GB", `["crime","nordic"]`, category, count, version)
	}
	after := func(count, version int) string {
		return program("Nordic Noir (Restored)", "New cut.", "sv", `["crime"]`, "crime", count, version)
	}
	tests := []struct {
		name string
		n    int
		want map[string]string
	}{
		{"draft", 3, map[string]string{}},
		{"program published", 4, map[string]string{
			ks.Program(pid): before("Nordic Noir", "drama", 0, 3), ks.ProgramEpisodes(pid): `[]`}},
		{"episode published", 6, map[string]string{
			ks.Program(pid): before("Nordic Noir", "drama", 1, 5), ks.ProgramEpisodes(pid): `[` + episode + `]`, ks.Episode(eid): episode}},
		{"program updated", 7, map[string]string{
			ks.Program(pid): after(1, 6), ks.ProgramEpisodes(pid): `[` + episode + `]`, ks.Episode(eid): episode}},
		{"episode unpublished", 8, map[string]string{
			ks.Program(pid): after(0, 7), ks.ProgramEpisodes(pid): `[]`}},
		{"program unpublished", 9, map[string]string{}},
		{"archived", 11, map[string]string{}},
	}
	e := newEnv(t)
	applied := 0
	for _, tc := range tests {
		e.apply(t, golden[applied:tc.n], 1)
		applied = tc.n
		e.flush(t)
		got := e.docs(t)
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("%s: documents\n got %v\nwant %v", tc.name, got, tc.want)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// expected derives the documents from the reference fold of hist, independently
// of the flusher's code.
func expected(t *testing.T, hist []events.Envelope) map[string]string {
	t.Helper()
	ks := mmredis.CatalogKeyspace(1)
	m := pt.Fold(hist)
	out := map[string]string{}
	byProgram := map[string][]pt.Episode{}
	for _, ep := range m.Episodes {
		byProgram[ep.ProgramID] = append(byProgram[ep.ProgramID], ep)
	}
	for id, p := range m.Programs {
		if p.Status != "published" {
			continue
		}
		eps := byProgram[id]
		sort.Slice(eps, func(i, j int) bool {
			a, b := eps[i], eps[j]
			if a.Season != b.Season {
				return a.Season < b.Season
			}
			if a.Number != b.Number {
				return a.Number < b.Number
			}
			return a.ID < b.ID
		})
		list := []documents.Episode{}
		for _, ep := range eps {
			if ep.Status != "published" {
				continue
			}
			d := documents.Episode{ID: ep.ID, ProgramID: ep.ProgramID, Title: ep.Title, Number: ep.Number, Season: ep.Season,
				Description: ep.Description, DurationSeconds: ep.DurationSeconds, PublishedAt: ep.PublishedAt, Images: json.RawMessage(`{}`)}
			list = append(list, d)
			out[ks.Episode(ep.ID)] = mustJSON(t, d)
		}
		out[ks.ProgramEpisodes(id)] = mustJSON(t, list)
		out[ks.Program(id)] = mustJSON(t, documents.Program{ID: id, Title: p.Title, Description: p.Description, Category: p.Category,
			Language: p.Language, Tags: p.Tags, PublishedAt: p.PublishedAt, EpisodeCount: p.EpisodeCount, Images: json.RawMessage(`{}`), Version: p.Version})
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDocumentsFollowTheCatalog applies a generated history in random batches with
// flushes at random moments, and with shuffled redeliveries (rewinds and stale
// duplicates): Redis ends equal to the reference fold either way.
func TestDocumentsFollowTheCatalog(t *testing.T) {
	t.Parallel()
	hist := pt.Generate(41, 120)
	want := expected(t, hist)
	tests := []struct {
		name string
		feed []events.Envelope
	}{
		{"once", hist},
		{"redelivered", pt.Redeliver(3, hist)},
		{"twice", append(append([]events.Envelope{}, hist...), hist...)},
		{"partitions redelivered and interleaved", partitioned(hist, 4, 9)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rng := rand.New(rand.NewPCG(5, 5))
			for feed := tc.feed; len(feed) > 0; {
				n := min(len(feed), 1+rng.IntN(300))
				e.apply(t, feed[:n], rng.Uint64())
				feed = feed[n:]
				if rng.IntN(2) == 0 {
					e.flush(t)
				}
			}
			e.flush(t)
			if got := e.docs(t); !reflect.DeepEqual(got, want) {
				reportDiff(t, got, want)
			}
			var pending int
			if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM catalog_documents_outbox_v1`).Scan(&pending); err != nil || pending != 0 {
				t.Errorf("outbox holds %d entries after a flush (%v)", pending, err)
			}
		})
	}
}

// partitioned delivers hist as a consumer of a partitioned topic sees it: events
// keyed by program over n partitions, each partition redelivering (rewinds and stale
// duplicates), the partitions' chunks interleaved at random.
func partitioned(hist []events.Envelope, n int, seed uint64) []events.Envelope {
	parts := make([][]events.Envelope, n)
	for _, e := range hist {
		i := int(fnv32(strings.TrimPrefix(e.StreamID, "program-")) % uint32(n))
		parts[i] = append(parts[i], e)
	}
	for i := range parts {
		parts[i] = pt.Redeliver(seed+uint64(i), parts[i])
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	var out []events.Envelope
	for {
		live := 0
		for i := range parts {
			if len(parts[i]) > 0 {
				live++
			}
		}
		if live == 0 {
			return out
		}
		i := rng.IntN(n)
		k := min(len(parts[i]), 1+rng.IntN(30))
		out = append(out, parts[i][:k]...)
		parts[i] = parts[i][k:]
	}
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func reportDiff(t *testing.T, got, want map[string]string) {
	t.Helper()
	n := 0
	for k, w := range want {
		if g := got[k]; g != w && n < 5 {
			t.Errorf("%s\n got %s\nwant %s", k, g, w)
			n++
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && n < 10 {
			t.Errorf("%s should not exist: %s", k, g)
			n++
		}
	}
	t.Errorf("%d documents, want %d", len(got), len(want))
}

// TestOutboxRecordsOnlyChanges: a batch that changes rows records them; the same
// events again record nothing.
func TestOutboxRecordsOnlyChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	golden := pt.Golden(t)
	count := func() (n int) {
		t.Helper()
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM catalog_documents_outbox_v1`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	e.apply(t, golden, 1)
	if n := count(); n == 0 {
		t.Fatal("no outbox entries after the golden history")
	}
	e.flush(t)
	e.apply(t, golden, 2)
	e.apply(t, pt.Redeliver(4, golden), 3)
	if n := count(); n != 0 {
		t.Fatalf("redelivered events recorded %d outbox entries", n)
	}
	// Without WithDocuments nothing is recorded.
	pool, _ := pgtest.NewDB(t)
	pt.ApplyDirect(t, pool, catalog.New(nil), golden, 1, 5)
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM catalog_documents_outbox_v1`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("catalog without documents recorded %d entries (%v)", n, err)
	}
}

// TestNoticesAndGenerations: a flush that changes a visible program bumps both
// generation counters once and announces what changed with the position; a flush
// of a draft's changes does not bump them.
func TestNoticesAndGenerations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ks := e.store.Keys()
	sub := e.redis.Subscribe(ctx, ks.Invalidate())
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	gen := func(key string) int {
		n, err := e.redis.Get(ctx, key).Int()
		if err != nil && !errors.Is(err, goredis.Nil) {
			t.Fatal(err)
		}
		return n
	}
	setCheckpoint(t, e.pool, 0)
	golden := pt.Golden(t)
	e.apply(t, golden[:3], 1) // a draft with a draft episode
	setCheckpoint(t, e.pool, golden[2].Position)
	res := e.flush(t)
	if gen(ks.GenBrowse()) != 0 || gen(ks.GenSearch()) != 0 || res.Programs != 0 {
		t.Fatalf("a draft bumped the generations: %+v", res)
	}
	if res.Position != golden[2].Position || !res.Resynced {
		t.Fatalf("first flush %+v, want position %d and a resync (empty Redis)", res, golden[2].Position)
	}
	e.apply(t, golden[3:6], 1) // published, with its episode
	setCheckpoint(t, e.pool, golden[5].Position)
	res = e.flush(t)
	if gen(ks.GenBrowse()) != 1 || gen(ks.GenSearch()) != 1 || res.Programs != 1 || res.Episodes != 1 {
		t.Fatalf("publish: browse %d search %d, %+v", gen(ks.GenBrowse()), gen(ks.GenSearch()), res)
	}
	var last documents.Notice
	deadline := time.After(5 * time.Second)
	for last.Position != golden[5].Position {
		select {
		case m := <-sub.Channel():
			if err := json.Unmarshal([]byte(m.Payload), &last); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatalf("no invalidation with position %d; last %+v", golden[5].Position, last)
		}
	}
	if !slices.Equal(last.Programs, []string{pt.GoldenProgramID}) || len(last.Episodes) != 1 {
		t.Errorf("invalidation %+v", last)
	}
	if pos, ok, err := e.store.Position(ctx); pos != golden[5].Position || !ok || err != nil {
		t.Errorf("position %d %v %v", pos, ok, err)
	}
}

// setCheckpoint writes the catalog checkpoint the flusher reads, as the runtime
// would have in the batches' transactions.
func setCheckpoint(t *testing.T, pool *pgxpool.Pool, pos int64) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `INSERT INTO projection_checkpoints (name, version, position, serving) VALUES ($1, $2, $3, true)
		ON CONFLICT (name, version) DO UPDATE SET position = EXCLUDED.position`, catalog.Name, catalog.Version, pos)
	if err != nil {
		t.Fatal(err)
	}
}

// TestRedisLostItsData: when the keys vanish (a Redis restart without
// persistence), the next flush rewrites every document from the catalog.
func TestRedisLostItsData(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hist := pt.Generate(43, 40)
	e.apply(t, hist, 1)
	e.flush(t)
	want := e.docs(t)
	if len(want) == 0 {
		t.Fatal("no documents")
	}
	redistest.Clear(t, e.redis, e.store.Keys().Base())
	redistest.Clear(t, e.redis, "{"+e.store.Keys().Base())
	if res := e.flush(t); !res.Resynced {
		t.Fatalf("flush after data loss: %+v, want a resync", res)
	}
	if got := e.docs(t); !reflect.DeepEqual(got, want) {
		reportDiff(t, got, want)
	}
}

// flakyStore fails every call while down is set.
type flakyStore struct {
	documents.Store
	down  atomic.Bool
	calls atomic.Int64
}

var errDown = errors.New("redis: connection refused (injected)")

func (s *flakyStore) Write(ctx context.Context, ws []documents.Write) ([]bool, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return nil, errDown
	}
	return s.Store.Write(ctx, ws)
}

func (s *flakyStore) Announce(ctx context.Context, n documents.Notice, initial bool) (bool, error) {
	if s.down.Load() {
		return false, errDown
	}
	return s.Store.Announce(ctx, n, initial)
}

func (s *flakyStore) Position(ctx context.Context) (int64, bool, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return 0, false, errDown
	}
	return s.Store.Position(ctx)
}

// TestRunWithTheRuntime runs the catalog in the runtime and the flusher beside it:
// documents follow commits within a bounded wait; while Redis is down the catalog
// keeps moving and the documents catch up once it is back. A second flusher waits
// for the first one's lock.
func TestRunWithTheRuntime(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	c := redistest.Client(t)
	real, err := mmredis.NewDocuments(c, redistest.Keyspace(t, c), 0)
	if err != nil {
		t.Fatal(err)
	}
	store := &flakyStore{Store: real}
	e := newEnvWith(t, pool, c, store)
	e.store = real
	hist := pt.Generate(44, 60)
	src := pt.NewSource()
	rt, err := runtime.New(pool, src, []runtime.Projection{e.proj}, runtime.Options{Logger: quiet, BatchWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { _ = rt.Run(ctx) })
	wg.Go(func() { _ = e.flusher.Run(ctx) })
	second, err := documents.New(pool, store, documents.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = second.Run(ctx) })

	half := len(hist) / 2
	src.Append(hist[:half]...)
	waitDocs(t, e, expected(t, hist[:half]))

	store.down.Store(true)
	src.Append(hist[half:]...)
	waitCheckpoint(t, pool, hist[len(hist)-1].Position)
	if _, err := e.flusher.Status(context.Background()); !errors.Is(err, errDown) {
		t.Errorf("status while Redis is down: %v, want the store's error", err)
	}
	var pending int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM catalog_documents_outbox_v1`).Scan(&pending); err != nil || pending == 0 {
		t.Fatalf("outbox holds %d entries while Redis is down (%v), want some", pending, err)
	}
	store.down.Store(false)
	waitDocs(t, e, expected(t, hist))
	st, err := e.flusher.Status(context.Background())
	if err != nil || st.Position != hist[len(hist)-1].Position {
		// The position is announced after the documents: wait for it too.
		deadline := time.Now().Add(10 * time.Second)
		for (err != nil || st.Position != hist[len(hist)-1].Position) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			st, err = e.flusher.Status(context.Background())
		}
	}
	if err != nil || st.Position != hist[len(hist)-1].Position || st.Pending != 0 {
		t.Errorf("status %+v (%v), want position %d and nothing pending", st, err, hist[len(hist)-1].Position)
	}
}

func waitDocs(t *testing.T, e *env, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := e.docs(t)
		if reflect.DeepEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			reportDiff(t, got, want)
			t.FailNow()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitCheckpoint(t *testing.T, pool *pgxpool.Pool, pos int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var cp int64
		err := pool.QueryRow(context.Background(), `SELECT position FROM projection_checkpoints WHERE name = $1 AND version = $2`,
			catalog.Name, catalog.Version).Scan(&cp)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if cp >= pos {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("catalog checkpoint %d never reached %d", cp, pos)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFreshnessOfDocuments: Options.Freshness hears of every program document a
// flush changes, with its row's updated_at, while the version serves; a flush that
// resynced and a version that does not serve report nothing.
func TestFreshnessOfDocuments(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	c := redistest.Client(t)
	store, err := mmredis.NewDocuments(c, redistest.Keyspace(t, c), 0)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		observed []time.Time
	)
	f, err := documents.New(pool, store, documents.Options{Logger: quiet, Freshness: func(at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		observed = append(observed, at)
	}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{pool: pool, redis: c, store: store, flusher: f, proj: catalog.New(nil, catalog.WithDocuments())}
	take := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		out := observed
		observed = nil
		return out
	}
	hist := pt.Generate(47, 30)
	third := len(hist) / 3

	e.apply(t, hist[:third], 1)
	setCheckpoint(t, pool, hist[third-1].Position)
	if res := e.flush(t); !res.Resynced {
		t.Fatalf("first flush %+v, want a resync", res)
	}
	if got := take(); len(got) != 0 {
		t.Errorf("a resync reported %d freshness observations, want none", len(got))
	}

	e.apply(t, hist[third:2*third], 2)
	setCheckpoint(t, pool, hist[2*third-1].Position)
	res := e.flush(t)
	if res.Resynced || res.Programs == 0 {
		t.Fatalf("second flush %+v, want program documents changed", res)
	}
	got := take()
	if len(got) != res.Programs {
		t.Errorf("%d freshness observations for %d changed program documents", len(got), res.Programs)
	}
	rows, err := pool.Query(context.Background(), `SELECT updated_at FROM `+catalog.ProgramsTable)
	if err != nil {
		t.Fatal(err)
	}
	updated, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range got {
		if !slices.ContainsFunc(updated, at.Equal) {
			t.Errorf("observed %v, no program's updated_at", at)
		}
	}

	if _, err := pool.Exec(context.Background(), `UPDATE projection_checkpoints SET serving = false WHERE name = $1`, catalog.Name); err != nil {
		t.Fatal(err)
	}
	e.apply(t, hist[2*third:], 3)
	if res := e.flush(t); res.Programs == 0 {
		t.Fatalf("third flush %+v, want program documents changed", res)
	}
	if got := take(); len(got) != 0 {
		t.Errorf("a version that does not serve reported %d freshness observations", len(got))
	}
}
