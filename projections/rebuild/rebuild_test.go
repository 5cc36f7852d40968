package rebuild_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/app/apptest"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

var (
	catalogTables   = []string{catalog.ProgramsTable, catalog.EpisodesTable, catalog.CategoriesTable}
	editorialTables = []string{editorial.ProgramsTable}
)

// reader is a discovery query against the serving version: the published
// programs' ids. version names the tables to read.
type reader struct {
	name    string
	version func(ctx context.Context, tx pgx.Tx) (int, error)
	// snapshot reads version and rows in one REPEATABLE READ transaction.
	snapshot bool
}

func (r reader) read(ctx context.Context, pool *pgxpool.Pool) (int, []string, error) {
	opts := pgx.TxOptions{AccessMode: pgx.ReadOnly}
	if r.snapshot {
		opts.IsoLevel = pgx.RepeatableRead
	}
	var v int
	var ids []string
	err := pgx.BeginTxFunc(ctx, pool, opts, func(tx pgx.Tx) error {
		var err error
		if v, err = r.version(ctx, tx); err != nil {
			return err
		}
		table, err := rebuild.VersionedTable(catalog.ProgramsTable, v)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id::text FROM `+pgx.Identifier{table}.Sanitize()+` WHERE status = 'published'`)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return v, ids, err
}

// TestRebuildWhileCommandsAndQueriesRun rebuilds the catalog while programs are
// created and published through the command handlers and two kinds of readers
// query the serving version: no query fails, no answer misses a program an
// earlier answer had (programs are never unpublished here), the readers move to
// the new version, and the new version equals the old one row for row.
func TestRebuildWhileCommandsAndQueriesRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	h := app.NewHandlers(f.store)
	const seeded = 60
	for i := range seeded {
		if _, err := apptest.PublishProgram(ctx, h, i); err != nil {
			t.Fatal(err)
		}
	}
	m := f.manager(t, nil, f.options())
	var switched atomic.Int32
	m.OnSwitch(func(_ context.Context, name string, from, to int) {
		if name == catalog.Name && from == 1 && to == 2 {
			switched.Add(1)
		}
	})
	run(t, m)
	caughtUp(t, f, catalog.Name, 1)
	watcher, err := rebuild.NewWatcher(f.pool, f.log)
	if err != nil {
		t.Fatal(err)
	}
	var watched atomic.Int32
	watcher.OnSwitch(func(_ context.Context, name string, from, to int) {
		if name == catalog.Name && from == 1 && to == 2 {
			watched.Add(1)
		}
	})
	wctx, wcancel := context.WithCancel(ctx)
	wdone := make(chan struct{})
	go func() { defer close(wdone); _ = watcher.Run(wctx) }()
	t.Cleanup(func() { wcancel(); <-wdone })
	<-watcher.Loaded()

	// Writers and readers run until stopped.
	tctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var written atomic.Int64
	writeErr := make(chan error, 1)
	for w := range 2 {
		wg.Go(func() {
			for i := 0; tctx.Err() == nil; i++ {
				if _, err := apptest.PublishProgram(ctx, h, 1000*(w+1)+i); err != nil {
					writeErr <- err
					return
				}
				written.Add(1)
			}
		})
	}
	readers := []reader{
		{name: "snapshot", snapshot: true, version: func(ctx context.Context, tx pgx.Tx) (int, error) {
			return rebuild.ServingVersion(ctx, tx, catalog.Name)
		}},
		{name: "watcher", version: func(context.Context, pgx.Tx) (int, error) { return watcher.Version(catalog.Name, 1), nil }},
	}
	type outcome struct {
		queries  int
		versions map[int]int
		err      error
	}
	outcomes := make([]outcome, len(readers))
	onV2 := make([]atomic.Int64, len(readers))
	for i, r := range readers {
		wg.Go(func() {
			o := outcome{versions: map[int]int{}}
			defer func() { outcomes[i] = o }()
			seen := map[string]bool{}
			lastVersion := 0
			for tctx.Err() == nil {
				v, ids, err := r.read(ctx, f.pool)
				if err != nil {
					o.err = fmt.Errorf("query %d: %w", o.queries, err)
					return
				}
				o.queries++
				o.versions[v]++
				if v == 2 {
					onV2[i].Add(1)
				}
				if v < lastVersion {
					o.err = fmt.Errorf("query %d read version %d after version %d", o.queries, v, lastVersion)
					return
				}
				lastVersion = v
				if len(ids) < seeded {
					o.err = fmt.Errorf("query %d (version %d): %d programs, fewer than the %d seeded", o.queries, v, len(ids), seeded)
					return
				}
				now := map[string]bool{}
				for _, id := range ids {
					now[id] = true
				}
				for id := range seen {
					if !now[id] {
						o.err = fmt.Errorf("query %d (version %d): program %s, in an earlier answer, is missing", o.queries, v, id)
						return
					}
				}
				seen = now
			}
		})
	}

	waitFor(t, 10*time.Second, "some commands", func() (bool, error) { return written.Load() >= 5, nil })
	id, err := m.StartRebuild(ctx, catalog.Name)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the rebuild to complete", func() (bool, error) {
		p, err := m.Progress(ctx, catalog.Name)
		if p.Status == rebuild.RebuildFailed {
			return false, fmt.Errorf("rebuild failed: %s", p.Error)
		}
		return p.Status == rebuild.RebuildCompleted, err
	})
	// Keep writing and reading on the new version for a while.
	after := written.Load()
	waitFor(t, 10*time.Second, "commands after the switch", func() (bool, error) { return written.Load() >= after+5, nil })
	waitFor(t, 10*time.Second, "the watcher to see the switch", func() (bool, error) { return watcher.Version(catalog.Name, 0) == 2, nil })
	waitFor(t, 10*time.Second, "queries on version 2", func() (bool, error) {
		for i := range readers {
			if onV2[i].Load() < 3 {
				return false, nil
			}
		}
		return true, nil
	})
	stop()
	wg.Wait()
	select {
	case err := <-writeErr:
		t.Fatalf("command failed: %v", err)
	default:
	}
	for i, o := range outcomes {
		if o.err != nil {
			t.Errorf("reader %s: %v", readers[i].name, o.err)
		}
		if o.versions[1] == 0 || o.versions[2] == 0 {
			t.Errorf("reader %s read versions %v, want both 1 and 2", readers[i].name, o.versions)
		}
	}

	p, err := m.Progress(ctx, catalog.Name)
	if err != nil {
		t.Fatal(err)
	}
	if p.RebuildID != id || p.FromVersion != 1 || p.ToVersion != 2 || p.Processed == 0 || p.Processed > p.Total ||
		p.ETASeconds == nil || *p.ETASeconds != 0 || p.FinishedAt == nil {
		t.Errorf("progress after the switch: %+v", p)
	}
	if _, serving := checkpointOf(t, f.pool, catalog.Name, 2); !serving {
		t.Error("version 2 does not serve")
	}
	if switched.Load() != 1 || watched.Load() != 1 {
		t.Errorf("switch hooks ran %d times in the manager and %d in the watcher, want 1 and 1", switched.Load(), watched.Load())
	}

	// The same events give the same rows: bring the frozen version 1 to the head
	// with a plain runtime and compare the two versions table by table.
	caughtUp(t, f, catalog.Name, 2)
	if _, err := f.pool.Exec(ctx, `UPDATE projection_checkpoints SET position = (SELECT frozen_position FROM projection_rebuilds WHERE id = $1)
		WHERE name = $2 AND version = 1`, id, catalog.Name); err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.New(f.pool, f.store, []runtime.Projection{catalog.New(nil)}, f.options().Runtime)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	rdone := make(chan struct{})
	go func() { defer close(rdone); _ = rt.Run(rctx) }()
	caughtUp(t, f, catalog.Name, 1)
	rcancel()
	<-rdone
	sameTables(t, f.pool, catalogTables, 1, 2)
	if n := rowCount(t, f.pool, "catalog_programs_v2"); n < seeded+10 {
		t.Errorf("catalog_programs_v2 has %d rows", n)
	}
}

// TestRebuildKilledHalfWayResumes kills the process driving a rebuild in the
// middle of its replay: the live version keeps serving and the rebuild stays
// running; a new manager resumes it from the new version's checkpoint (it applies
// fewer events than the history holds) and the result equals the live version.
func TestRebuildKilledHalfWayResumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	hist := pt.Generate(11, 150)
	appendHistory(t, f.store, hist)

	var armed atomic.Bool
	armed.Store(true)
	applied := &atomic.Int64{}
	reached := make(chan struct{})
	var once sync.Once
	resumed := &atomic.Int64{}
	defs := slices.Clone(f.defs)
	base := defs[0].Projection
	defs[0].Projection = func(v int) (runtime.Projection, error) {
		p, err := base(v)
		if err != nil || v == 1 {
			return p, err
		}
		if armed.Load() {
			return gate{Projection: p, limit: int64(len(hist) / 3), applied: applied, reached: reached, once: &once}, nil
		}
		return counting{Projection: p, n: resumed}, nil
	}
	opts := f.options()
	opts.ReplayBatchSize = 100
	m1 := f.manager(t, defs, opts)
	stop1 := run(t, m1)
	caughtUp(t, f, catalog.Name, 1)
	caughtUp(t, f, editorial.Name, 1)
	id, err := m1.StartRebuild(ctx, catalog.Name)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the rebuild never got a third of the way")
	}
	stop1() // the process dies half-way

	p, err := m1.Progress(ctx, catalog.Name)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != rebuild.RebuildRunning || p.RebuildID != id {
		t.Fatalf("after the kill: %+v, want the rebuild still running", p)
	}
	if _, serving := checkpointOf(t, f.pool, catalog.Name, 1); !serving {
		t.Fatal("version 1 stopped serving")
	}
	pos2, serving2 := checkpointOf(t, f.pool, catalog.Name, 2)
	if serving2 || pos2 <= 0 || pos2 >= head(t, f) {
		t.Fatalf("version 2 checkpoint %d (serving %v), want part-way below head %d", pos2, serving2, head(t, f))
	}
	// Fed in order, the checkpoint is a watermark, persisted as such for a
	// stream consumer of the version after its switch (the Kafka mode).
	if w := replayedThrough(t, f.pool, catalog.Name, 2); w != pos2 {
		t.Errorf("version 2 replayed_through %d after the kill, want its checkpoint %d", w, pos2)
	}
	if _, err := m1.StartRebuild(ctx, catalog.Name); !errors.Is(err, rebuild.ErrRebuildRunning) {
		t.Fatalf("second rebuild: %v, want ErrRebuildRunning", err)
	}

	// A process that dies does not release its lease: the next one waits for it
	// to expire.
	if _, err := f.pool.Exec(ctx, `UPDATE projection_rebuilds SET owner = 'crashed-process', lease_until = now() + interval '300 ms'
		WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	armed.Store(false)
	m2 := f.manager(t, defs, opts)
	run(t, m2)
	waitFor(t, 30*time.Second, "the resumed rebuild to complete", func() (bool, error) {
		p, err := m2.Progress(ctx, catalog.Name)
		if p.Status == rebuild.RebuildFailed {
			return false, fmt.Errorf("rebuild failed: %s", p.Error)
		}
		return p.Status == rebuild.RebuildCompleted, err
	})
	if n := resumed.Load(); n == 0 || n >= int64(len(hist)) {
		t.Errorf("the resumed rebuild applied %d events; want some, but fewer than the %d of the history", n, len(hist))
	}
	p, _ = m2.Progress(ctx, catalog.Name)
	if p.RebuildID != id || p.Processed != int64(len(hist)) || p.Total != int64(len(hist)) {
		t.Errorf("progress %+v, want rebuild %s with %d of %d processed", p, id, len(hist), len(hist))
	}
	sameTables(t, f.pool, catalogTables, 1, 2)
	pt.CheckModel(t, f.pool, hist, "catalog_programs_v2", true)
	if w, h := replayedThrough(t, f.pool, catalog.Name, 2), head(t, f); w != h {
		t.Errorf("version 2 replayed_through %d after the resumed replay, want the head %d", w, h)
	}
}

func TestStartRebuildErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	m := f.manager(t, nil, f.options())
	tests := []struct {
		name string
		want error
	}{
		{"nope", rebuild.ErrUnknownProjection},
		{"engagement", rebuild.ErrNotRebuildable},
		{"thumbnails", rebuild.ErrNotRebuildable},
	}
	for _, tt := range tests {
		if _, err := m.StartRebuild(ctx, tt.name); !errors.Is(err, tt.want) {
			t.Errorf("StartRebuild(%q) = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := m.Progress(ctx, editorial.Name); !errors.Is(err, rebuild.ErrNoRebuild) {
		t.Errorf("Progress before any rebuild = %v, want ErrNoRebuild", err)
	}
	if _, err := m.Progress(ctx, "nope"); !errors.Is(err, rebuild.ErrUnknownProjection) {
		t.Errorf("Progress(nope) = %v, want ErrUnknownProjection", err)
	}
	// Concurrent starts: exactly one wins, the others are told one is running.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = m.StartRebuild(ctx, editorial.Name) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, rebuild.ErrRebuildRunning):
			t.Errorf("concurrent start: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d concurrent starts won, want 1", won)
	}
	p, err := m.Progress(ctx, editorial.Name)
	if err != nil || p.Status != rebuild.RebuildRunning || p.FromVersion != 1 || p.ToVersion != 2 || p.ETASeconds != nil {
		t.Errorf("progress of a started rebuild: %+v, %v", p, err)
	}
}

// TestRetireAfterGrace: after the switch the replaced version is frozen and listed
// as retiring; once the grace period is over its tables and checkpoint are gone,
// and a second rebuild goes on to version 3.
func TestRetireAfterGrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	appendHistory(t, f.store, pt.Generate(3, 40))
	opts := f.options()
	opts.Grace = 300 * time.Millisecond
	m := f.manager(t, nil, opts)
	run(t, m)
	caughtUp(t, f, editorial.Name, 1)
	if _, err := m.StartRebuild(ctx, editorial.Name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the switch", func() (bool, error) {
		_, serving := checkpointOf(t, f.pool, editorial.Name, 2)
		return serving, nil
	})
	sts, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range sts {
		got[fmt.Sprintf("%s/%d", s.Name, s.Version)] = s.Status
		if s.Name == editorial.Name && s.Version == 1 && s.Position != head(t, f) {
			t.Errorf("retiring version's position %d, want its frozen position %d", s.Position, head(t, f))
		}
	}
	want := map[string]string{"catalog/1": "serving", "editorial/1": "retiring", "editorial/2": "serving",
		"engagement/1": "running", "thumbnails/1": "running"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("status of %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	waitFor(t, 30*time.Second, "version 1 to be dropped", func() (bool, error) {
		pos, _ := checkpointOf(t, f.pool, editorial.Name, 1)
		return pos < 0 && !tableExists(t, f.pool, "editorial_programs_v1"), nil
	})
	if _, err := m.StartRebuild(ctx, editorial.Name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the second switch", func() (bool, error) {
		_, serving := checkpointOf(t, f.pool, editorial.Name, 3)
		return serving, nil
	})
	sameTables(t, f.pool, editorialTables, 2, 3)
}

// TestFailedRebuildCanRestart: a sink that cannot be prepared fails the rebuild,
// which removes what it built and leaves the live version serving; the next
// rebuild starts afresh at a new version.
func TestFailedRebuildCanRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	appendHistory(t, f.store, pt.Generate(5, 20))
	var broken atomic.Bool
	broken.Store(true)
	defs := slices.Clone(f.defs)
	defs[1].Sinks = append(slices.Clone(defs[1].Sinks), rebuild.FuncSink{PrepareFunc: func(context.Context, int, int) error {
		if broken.Load() {
			return errors.New("index service unavailable")
		}
		return nil
	}})
	m := f.manager(t, defs, f.options())
	run(t, m)
	if _, err := m.StartRebuild(ctx, editorial.Name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the rebuild to fail", func() (bool, error) {
		p, err := m.Progress(ctx, editorial.Name)
		return p.Status == rebuild.RebuildFailed, err
	})
	p, _ := m.Progress(ctx, editorial.Name)
	if p.Error == "" || p.ToVersion != 2 {
		t.Errorf("failed progress: %+v", p)
	}
	if pos, _ := checkpointOf(t, f.pool, editorial.Name, 2); pos >= 0 || tableExists(t, f.pool, "editorial_programs_v2") {
		t.Error("the failed version's checkpoint or table is still there")
	}
	broken.Store(false)
	if _, err := m.StartRebuild(ctx, editorial.Name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the restarted rebuild", func() (bool, error) {
		_, serving := checkpointOf(t, f.pool, editorial.Name, 3)
		return serving, nil
	})
	caughtUp(t, f, editorial.Name, 3)
	if n := rowCount(t, f.pool, "editorial_programs_v3"); n != 20 {
		t.Errorf("editorial_programs_v3 has %d rows, want 20", n)
	}
	// The restart built a new version from a fresh checkpoint row: its watermark
	// is its own replay's.
	if w, h := replayedThrough(t, f.pool, editorial.Name, 3), head(t, f); w != h {
		t.Errorf("version 3 replayed_through %d, want the head %d", w, h)
	}
}
