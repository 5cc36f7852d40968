package readmodel_test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel/readmodeltest"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/engagement"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
	"github.com/mediamesh/mediamesh/query/app"
)

func newCatalog(t *testing.T, primary *pgxpool.Pool, replicas ...*pgxpool.Pool) (*readmodel.Catalog, *readmodel.Router) {
	t.Helper()
	r, err := readmodel.NewRouter(primary, replicas, readmodel.RouterOptions{ReplicaTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := readmodel.NewCatalog(r, readmodel.CatalogTables{})
	if err != nil {
		t.Fatal(err)
	}
	return c, r
}

// fixture is a small catalog written through the commands and the projections.
type fixture struct {
	w                      *readmodeltest.World
	a, b, c                string // a: published, b: draft, c: unpublished
	e1, e2, e3             string // of a: e1 s1 n2, e2 s1 n1 (published), e3 s2 n1 (draft)
	aVersion, lastPosition int64
}

func newFixture(t *testing.T, opts readmodeltest.Options) *fixture {
	t.Helper()
	w := readmodeltest.New(t, opts)
	f := &fixture{w: w}
	f.a, _ = w.CreateProgram(t, readmodeltest.Program{Title: "Nordic Noir", Description: "Cold cases.", Category: "drama", Language: "en-GB",
		Tags: []string{"crime", "noir"}, Publish: true})
	f.b, _ = w.CreateProgram(t, readmodeltest.Program{Title: "Draft Show", Category: "drama"})
	f.c, _ = w.CreateProgram(t, readmodeltest.Program{Title: "Gone Again", Category: "comedy", Publish: true})
	w.Unpublish(t, f.c)
	f.e1, _ = w.AddEpisode(t, f.a, readmodeltest.Episode{Title: "Second", Number: 2, Season: 1, Publish: true})
	f.e2, _ = w.AddEpisode(t, f.a, readmodeltest.Episode{Title: "First", Number: 1, Season: 1, Publish: true})
	f.e3, _ = w.AddEpisode(t, f.a, readmodeltest.Episode{Title: "Next season", Number: 1, Season: 2})
	_, r := w.CreateProgram(t, readmodeltest.Program{Title: "Alpha Docs", Category: "documentary", Language: "fr", Tags: []string{"nature"}, Publish: true})
	w.Sync(t, r)
	f.lastPosition = r.Position
	var v int64
	if err := w.Pool.QueryRow(context.Background(), `SELECT version FROM catalog_programs_v1 WHERE id = $1`, f.a).Scan(&v); err != nil {
		t.Fatal(err)
	}
	f.aVersion = v
	return f
}

func TestCatalogReadsWhatTheProjectionWrote(t *testing.T) {
	t.Parallel()
	f := newFixture(t, readmodeltest.Options{})
	c, _ := newCatalog(t, f.w.Pool)
	ctx := context.Background()

	p, v, snap, err := c.Program(ctx, f.a, nil)
	if err != nil || p == nil {
		t.Fatalf("Program(a) = %v, %v", p, err)
	}
	if p.Title != "Nordic Noir" || p.Language != "en-GB" || !slices.Equal(p.Tags, []string{"crime", "noir"}) || p.EpisodeCount != 2 ||
		p.PublishedAt == nil || p.PublishedAt.Location() != time.UTC || p.Version != f.aVersion || v != f.aVersion {
		t.Errorf("program a = %+v (version %d)", p, v)
	}
	if snap.Source != app.SourcePostgres || !snap.Includes || snap.Position < f.lastPosition {
		t.Errorf("snapshot %+v, want postgres at >= %d", snap, f.lastPosition)
	}
	for _, id := range []string{f.b, f.c} {
		p, v, _, err := c.Program(ctx, id, nil)
		if err != nil || p != nil || v < 1 {
			t.Errorf("Program(%s) = %v, version %d, %v; want invisible with its row version", id, p, v, err)
		}
	}
	if p, v, _, err := c.Program(ctx, "0190f1f4-0000-7000-8000-00000000dead", nil); err != nil || p != nil || v != 0 {
		t.Errorf("unknown program = %v, %d, %v", p, v, err)
	}

	got, _, err := c.Programs(ctx, []string{f.a, f.b, f.c, "0190f1f4-0000-7000-8000-00000000dead", "not-a-uuid"}, nil)
	if err != nil || len(got) != 1 || got[f.a] == nil {
		t.Errorf("Programs = %v, %v; want only a", got, err)
	}

	eps, visible, _, err := c.Episodes(ctx, f.a, nil)
	if err != nil || !visible || len(eps) != 2 || eps[0].ID != f.e2 || eps[1].ID != f.e1 || eps[0].ProgramID != f.a {
		t.Errorf("Episodes(a) = %+v, %v, %v; want e2, e1", eps, visible, err)
	}
	if eps, visible, _, err := c.Episodes(ctx, f.b, nil); err != nil || visible || len(eps) != 0 {
		t.Errorf("Episodes(draft) = %v, %v, %v", eps, visible, err)
	}
	if e, pid, _, err := c.Episode(ctx, f.e1, nil); err != nil || e == nil || e.Title != "Second" || e.Season != 1 || e.Number != 2 || pid != f.a {
		t.Errorf("Episode(e1) = %+v, %q, %v", e, pid, err)
	}
	if e, pid, _, err := c.Episode(ctx, f.e3, nil); err != nil || e != nil || pid != f.a {
		t.Errorf("Episode(draft e3) = %+v, %q, %v; want invisible of a", e, pid, err)
	}
	if e, pid, _, err := c.Episode(ctx, "0190f1f4-0000-7000-8000-00000000dead", nil); err != nil || e != nil || pid != "" {
		t.Errorf("unknown episode = %v, %q, %v", e, pid, err)
	}

	cats, _, err := c.Categories(ctx, nil)
	want := []app.Category{{Slug: "documentary", ProgramCount: 1}, {Slug: "drama", ProgramCount: 1}}
	if err != nil || !reflect.DeepEqual(cats, want) {
		t.Errorf("Categories = %v, %v; want %v", cats, err, want)
	}
	cps, err := c.Checkpoints(ctx)
	if err != nil || cps[catalog.Name] < f.lastPosition {
		t.Errorf("Checkpoints = %v, %v", cps, err)
	}
}

func TestCatalogBrowse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, readmodeltest.Options{})
	c, _ := newCatalog(t, f.w.Pool)
	ctx := context.Background()
	ids := func(ps []app.Program) []string {
		out := []string{}
		for _, p := range ps {
			out = append(out, p.Title)
		}
		return out
	}
	tests := []struct {
		name  string
		f     app.BrowseFilter
		want  []string
		total int
	}{
		{"recent", app.BrowseFilter{Sort: app.SortRecent, Limit: 20}, []string{"Alpha Docs", "Nordic Noir"}, 2},
		{"title", app.BrowseFilter{Sort: app.SortTitle, Limit: 20}, []string{"Alpha Docs", "Nordic Noir"}, 2},
		{"category", app.BrowseFilter{Category: "drama", Sort: app.SortRecent, Limit: 20}, []string{"Nordic Noir"}, 1},
		{"language", app.BrowseFilter{Language: "fr", Sort: app.SortTitle, Limit: 20}, []string{"Alpha Docs"}, 1},
		{"tag", app.BrowseFilter{Tag: "noir", Sort: app.SortTitle, Limit: 20}, []string{"Nordic Noir"}, 1},
		{"all filters", app.BrowseFilter{Category: "drama", Language: "en-GB", Tag: "crime", Sort: app.SortTitle, Limit: 20}, []string{"Nordic Noir"}, 1},
		{"no match", app.BrowseFilter{Category: "comedy", Sort: app.SortRecent, Limit: 20}, []string{}, 0},
		{"page 2 of 1", app.BrowseFilter{Sort: app.SortTitle, Offset: 1, Limit: 1}, []string{"Nordic Noir"}, 2},
		{"past the end", app.BrowseFilter{Sort: app.SortTitle, Offset: 40, Limit: 20}, []string{}, 2},
		{"far past the end", app.BrowseFilter{Category: "drama", Sort: app.SortTitle, Offset: 1 << 50, Limit: 20}, []string{}, 1},
	}
	for _, tc := range tests {
		items, total, snap, err := c.Browse(ctx, tc.f, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := ids(items); !slices.Equal(got, tc.want) || total != tc.total || !snap.Includes {
			t.Errorf("%s: %v (total %d), want %v (total %d)", tc.name, got, total, tc.want, tc.total)
		}
	}
}

// TestCatalogConsistencyCheck: the includes flag is exact: a program's row
// version for a write on its stream, the checkpoint for a write elsewhere.
func TestCatalogConsistencyCheck(t *testing.T) {
	t.Parallel()
	f := newFixture(t, readmodeltest.Options{})
	c, _ := newCatalog(t, f.w.Pool)
	ctx := context.Background()
	cp := f.w.Checkpoint(t, catalog.Name)
	tests := []struct {
		name  string
		after app.WritePoint
		want  bool
	}{
		{"own program, applied", app.WritePoint{StreamID: "program-" + f.a, Version: f.aVersion, Position: 1}, true},
		{"own program, older", app.WritePoint{StreamID: "program-" + f.a, Version: 1, Position: 1}, true},
		{"own program, not yet", app.WritePoint{StreamID: "program-" + f.a, Version: f.aVersion + 1, Position: 1}, false},
		{"other program, applied", app.WritePoint{StreamID: "program-" + f.b, Version: 1, Position: 1 << 40}, true},
		{"unknown program", app.WritePoint{StreamID: "program-0190f1f4-0000-7000-8000-00000000dead", Version: 1, Position: 1}, false},
		{"asset stream, applied", app.WritePoint{StreamID: "asset-x", Version: 1, Position: cp}, true},
		{"asset stream, not yet", app.WritePoint{StreamID: "asset-x", Version: 1, Position: cp + 1000}, false},
	}
	for _, tc := range tests {
		after := tc.after
		_, _, s1, err := c.Program(ctx, f.a, &after)
		if err != nil {
			t.Fatal(err)
		}
		_, s2, err := c.Programs(ctx, []string{f.a, f.c}, &after)
		if err != nil {
			t.Fatal(err)
		}
		_, _, s3, err := c.Episodes(ctx, f.a, &after)
		if err != nil {
			t.Fatal(err)
		}
		_, _, s4, err := c.Episode(ctx, f.e1, &after)
		if err != nil {
			t.Fatal(err)
		}
		_, _, s5, err := c.Browse(ctx, app.BrowseFilter{Category: "drama", Sort: app.SortRecent, Limit: 5}, &after)
		if err != nil {
			t.Fatal(err)
		}
		_, s6, err := c.Categories(ctx, &after)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range []app.Snapshot{s1, s2, s3, s4, s5, s6} {
			if s.Includes != tc.want || s.Position != cp {
				t.Errorf("%s: read %d: %+v, want includes=%v at %d", tc.name, i+1, s, tc.want, cp)
			}
		}
	}
}

// TestRouterFallsBackFromADeadReplica: a replica that cannot be reached (one that
// refuses connections, one that accepts and never answers) costs no error: the
// primary answers, and the replica is skipped for its cooldown.
func TestRouterFallsBackFromADeadReplica(t *testing.T) {
	t.Parallel()
	f := newFixture(t, readmodeltest.Options{})
	ctx := context.Background()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answered
		}
	}()
	for _, url := range []string{
		"postgres://postgres@127.0.0.1:1/nothing?sslmode=disable&connect_timeout=1",
		"postgres://postgres@" + silent.Addr().String() + "/nothing?sslmode=disable",
	} {
		dead, err := readmodel.OpenReplica(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(dead.Close)
		const replicaTimeout = time.Second
		r, err := readmodel.NewRouter(f.w.Pool, []*pgxpool.Pool{dead}, readmodel.RouterOptions{ReplicaTimeout: replicaTimeout, Cooldown: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		c, err := readmodel.NewCatalog(r, readmodel.CatalogTables{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			start := time.Now()
			p, _, snap, err := c.Program(ctx, f.a, nil)
			if err != nil || p == nil || snap.Position < f.lastPosition {
				t.Fatalf("%s read %d: %v, %v", url, i, p, err)
			}
			if i > 0 && time.Since(start) >= replicaTimeout {
				t.Errorf("%s read %d took %s: the dead replica was not skipped", url, i, time.Since(start))
			}
		}
	}
}

// TestRouterReadsReplicas runs a "replica": a second database fed from the same
// event log by its own runtime, opened read-only. Reads go to it; a read with a
// consistency token it does not include goes to the primary; writes fail on it.
func TestRouterReadsReplicas(t *testing.T) {
	t.Parallel()
	f := newFixture(t, readmodeltest.Options{})
	ctx := context.Background()
	replicaPool, replicaURL := pgtest.NewDB(t)
	rctx, stopReplica := context.WithCancel(ctx)
	rt, err := runtime.New(replicaPool, pgstore.New(f.w.Pool), []runtime.Projection{catalog.New(nil)}, runtime.Options{BatchWait: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = rt.Run(rctx); close(done) }()
	t.Cleanup(func() { stopReplica(); <-done })
	rw, err := runtime.NewWaiter(replicaPool, nil)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWaiter := context.WithCancel(ctx)
	t.Cleanup(stopWaiter)
	go func() { _ = rw.Run(wctx) }()
	waitCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := rw.WaitForPosition(waitCtx, catalog.Name, f.lastPosition); err != nil {
		t.Fatal(err)
	}
	stopReplica()
	<-done

	replica, err := readmodel.OpenReplica(ctx, replicaURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(replica.Close)
	if _, err := replica.Exec(ctx, `INSERT INTO catalog_categories_v1 (slug, program_count) VALUES ('x', 1)`); err == nil {
		t.Fatal("a write through the replica pool succeeded")
	}

	res := f.w.Retitle(t, f.a, "Nordic Noir II")
	f.w.Sync(t, res)
	c, _ := newCatalog(t, f.w.Pool, replica)
	p, _, snap, err := c.Program(ctx, f.a, nil)
	if err != nil || p.Title != "Nordic Noir" || snap.Position >= res.Position {
		t.Fatalf("read without a token = %+v at %d, %v; want the replica's older title", p, snap.Position, err)
	}
	after := &app.WritePoint{StreamID: res.StreamID, Version: res.Version, Position: res.Position}
	p, _, snap, err = c.Program(ctx, f.a, after)
	if err != nil || p.Title != "Nordic Noir II" || !snap.Includes || snap.Position < res.Position {
		t.Fatalf("read with the write's token = %+v, %+v, %v; want the primary's new title", p, snap, err)
	}
	items, _, snap, err := c.Browse(ctx, app.BrowseFilter{Category: "drama", Sort: app.SortTitle, Limit: 5}, after)
	if err != nil || len(items) != 1 || items[0].Title != "Nordic Noir II" || !snap.Includes {
		t.Fatalf("browse with the token = %+v, %+v, %v", items, snap, err)
	}
}

func TestSearchIndexAdapter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, readmodeltest.Options{Search: true})
	_, r := newCatalog(t, f.w.Pool)
	idx, err := readmodel.NewPostgresSearchIndex(r, search.IndexName(search.Version), func(db *pgxpool.Pool) (search.Reader, error) {
		return searchpg.New(db)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	hits, snap, err := idx.Search(ctx, app.SearchQuery{Text: "nordik", Page: 1, Limit: 10}, nil)
	if err != nil || !slices.Equal(hits.IDs, []string{f.a}) || hits.Total != 1 || hits.Facets[app.FacetCategory]["drama"] != 1 {
		t.Fatalf("search nordik = %+v, %v", hits, err)
	}
	if snap.Source != app.SourceSearch || snap.Position < f.lastPosition {
		t.Errorf("snapshot %+v", snap)
	}
	cp := f.w.Checkpoint(t, search.Name)
	for _, tc := range []struct {
		pos  int64
		want bool
	}{{cp, true}, {cp + 1, false}} {
		_, snap, err := idx.Search(ctx, app.SearchQuery{Text: "noir", Page: 1, Limit: 10}, &app.WritePoint{StreamID: "program-" + f.a, Version: 1, Position: tc.pos})
		if err != nil || snap.Includes != tc.want {
			t.Errorf("token at %d: %+v, %v; want includes=%v", tc.pos, snap, err, tc.want)
		}
	}
	missing, err := readmodel.NewPostgresSearchIndex(r, "programs_v9", func(db *pgxpool.Pool) (search.Reader, error) { return searchpg.New(db) })
	if err != nil {
		t.Fatal(err)
	}
	if hits, _, err := missing.Search(ctx, app.SearchQuery{Text: "noir", Page: 1, Limit: 10}, nil); err != nil || len(hits.IDs) != 0 {
		t.Errorf("search of a missing index = %+v, %v; want nothing", hits, err)
	}
}

func TestRankingsFallback(t *testing.T) {
	t.Parallel()
	f := newFixture(t, readmodeltest.Options{})
	ctx := context.Background()
	counter, err := engagement.NewCounter(f.w.Pool, engagement.CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var plays []engagement.Play
	for i := range 5 {
		plays = append(plays, engagement.Play{ProgramID: f.a, SessionID: string(rune('a' + i)), OccurredAt: now})
	}
	plays = append(plays, engagement.Play{ProgramID: f.c, SessionID: "x", OccurredAt: now}) // not visible
	if _, err := counter.Count(ctx, plays); err != nil {
		t.Fatal(err)
	}
	ref, err := engagement.NewRefresher(f.w.Pool, nil, engagement.RefresherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Refresh(ctx, engagement.RankingPopular); err != nil {
		t.Fatal(err)
	}
	_, r := newCatalog(t, f.w.Pool)
	rk, err := readmodel.NewRankings(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		category      string
		offset, limit int
		want          []string
		total         int
	}{
		{"", 0, 10, []string{f.a}, 1},
		{"drama", 0, 10, []string{f.a}, 1},
		{"comedy", 0, 10, []string{}, 0},
		{"", 5, 10, []string{}, 1},
	} {
		ids, total, err := rk.Ranked(ctx, engagement.RankingPopular, tc.category, tc.offset, tc.limit)
		if err != nil || !slices.Equal(ids, tc.want) || total != tc.total {
			t.Errorf("Ranked(%q, %d) = %v, %d, %v; want %v, %d", tc.category, tc.offset, ids, total, err, tc.want, tc.total)
		}
	}
}

func TestUnreachablePrimaryIsUnavailable(t *testing.T) {
	t.Parallel()
	dead, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dead.Close)
	c, _ := newCatalog(t, dead)
	_, _, _, err = c.Program(context.Background(), "0190f1f4-0000-7000-8000-00000000dead", nil)
	if !errors.Is(err, app.ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
}
