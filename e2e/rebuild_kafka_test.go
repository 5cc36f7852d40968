package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
)

// TestRebuildKafkaMode rebuilds the catalog and search projections in the Kafka
// mode while commands run: the relay publishes to kfake, the live versions consume
// content.events in their consumer groups, each rebuild replays the event store
// into version 2 and switches, and version 2 then consumes content.events in a
// group of its own (catalog.v2, search.v2), which starts at the oldest offset: it
// is handed again every event the replay applied. Commands carry on after the
// switch. At the end version 2 of each table equals, row for row, a clean
// projection of the whole event store: nothing between the replay and the live
// consumption was lost, and nothing redelivered was applied twice (the category
// counts move by deltas, so a double application would show there). Readers of the
// serving version never fail and never miss a seeded program.
func TestRebuildKafkaMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSystem(t, true)
	h := app.NewHandlers(s.store)

	const seeded = 30
	var seededIDs []string
	for i := range seeded {
		id, err := publishProgram(ctx, h, i)
		if err != nil {
			t.Fatal(err)
		}
		seededIDs = append(seededIDs, id)
	}

	defs := rebuildDefinitions(t, s)
	stream, err := kafka.NewSource(kafka.Config{Brokers: s.brokers}, kafka.SourceOptions{Logger: quiet, BatchWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m, err := rebuild.New(s.pool, s.store, defs, rebuild.Options{
		Runtime: runtime.Options{Stream: stream, Logger: quiet, BatchWait: 5 * time.Millisecond,
			MinBackoff: 5 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		ReplayBatchSize: 100,
		Grace:           time.Hour,
		Lease:           2 * time.Second,
		Poll:            50 * time.Millisecond,
		ProgressEvery:   20 * time.Millisecond,
		Logger:          quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	background(t, "projection manager", m.Run)
	relayCaughtUp(t, s)
	waitGroupsCaughtUp(t, s.brokers, visibleWithin)

	// Commands and readers run until stopped.
	tctx, stop := context.WithCancel(ctx)
	var (
		wg       sync.WaitGroup
		written  atomic.Int64
		errs     = make(chan error, 3)
		versions sync.Map // version read → true
	)
	wg.Go(func() {
		for i := seeded; tctx.Err() == nil; i++ {
			if err := changeCatalog(ctx, h, i); err != nil {
				errs <- fmt.Errorf("command %d: %w", i, err)
				return
			}
			written.Add(1)
		}
	})
	for range 2 {
		wg.Go(func() {
			for n := 0; tctx.Err() == nil; n++ {
				v, ids, err := readServing(ctx, s.pool)
				if err != nil {
					errs <- fmt.Errorf("query %d: %w", n, err)
					return
				}
				versions.Store(v, true)
				for _, id := range seededIDs {
					if !slices.Contains(ids, id) {
						errs <- fmt.Errorf("query %d (version %d): seeded program %s missing", n, v, id)
						return
					}
				}
			}
		})
	}
	var once sync.Once
	stopAll := func() {
		once.Do(func() {
			stop()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stopAll)

	eventually(t, visibleWithin, "commands before the rebuild", func() error {
		if n := written.Load(); n < 5 {
			return fmt.Errorf("%d commands", n)
		}
		return nil
	})
	for _, name := range []string{catalog.Name, search.Name} {
		if _, err := m.StartRebuild(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{catalog.Name, search.Name} {
		eventually(t, 60*time.Second, name+" rebuilt", func() error {
			p, err := m.Progress(ctx, name)
			if err != nil {
				return err
			}
			if p.Status == rebuild.RebuildFailed {
				t.Fatalf("rebuild of %s failed: %s", name, p.Error)
			}
			if p.Status != rebuild.RebuildCompleted {
				return fmt.Errorf("%s: %s, %d of %d", name, p.Status, p.Processed, p.Total)
			}
			return nil
		})
	}
	after := written.Load()
	eventually(t, visibleWithin, "commands after the switch", func() error {
		if n := written.Load(); n < after+10 {
			return fmt.Errorf("%d commands since the switch", n-after)
		}
		return nil
	})
	eventually(t, visibleWithin, "queries on version 2", func() error {
		if _, ok := versions.Load(2); !ok {
			return errors.New("no query read version 2 yet")
		}
		return nil
	})
	stopAll()
	if t.Failed() {
		t.FailNow()
	}
	if _, ok := versions.Load(1); !ok {
		t.Error("no query read version 1")
	}

	// Everything relayed and consumed by the new versions' groups.
	relayCaughtUp(t, s)
	waitConsumersCaughtUp(t, s.brokers, visibleWithin, "catalog.v2", "search.v2", "editorial.v1")
	head, err := s.store.HeadPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{catalog.Name, search.Name} {
		var pos int64
		var serving bool
		if err := s.pool.QueryRow(ctx, `SELECT position, serving FROM projection_checkpoints WHERE name = $1 AND version = 2`, name).
			Scan(&pos, &serving); err != nil {
			t.Fatal(err)
		}
		if !serving || pos != head {
			t.Errorf("%s v2: position %d, serving %v; want %d and serving", name, pos, serving, head)
		}
	}

	want, _, _ := cleanProjection(t, readAll(t, s.store))
	got := map[string]string{}
	for _, table := range readModelTables {
		v := 2
		if table == editorial.ProgramsTable {
			v = 1 // not rebuilt
		}
		name, err := rebuild.VersionedTable(table, v)
		if err != nil {
			t.Fatal(err)
		}
		got[table] = tableChecksum(t, s.pool, name)
	}
	for _, table := range slices.Sorted(maps.Keys(want)) {
		if got[table] != want[table] {
			t.Errorf("%s: rebuilt %s, clean projection %s", table, got[table], want[table])
		}
	}
}

// rebuildDefinitions are the projections a projector runs, for the rebuild
// manager: editorial, catalog and search (the PostgreSQL index).
func rebuildDefinitions(t *testing.T, s *system) []rebuild.Definition {
	t.Helper()
	ed, err := rebuild.Rebuildable(s.pool, editorial.New(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := rebuild.Rebuildable(s.pool, catalog.New(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := rebuild.Search(s.pool, s.search, s.search, nil)
	if err != nil {
		t.Fatal(err)
	}
	return []rebuild.Definition{ed, cat, sd}
}

// relayCaughtUp waits until the relay has published the event store's head.
func relayCaughtUp(t *testing.T, s *system) {
	t.Helper()
	head, err := s.store.HeadPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, visibleWithin, "relay caught up", func() error {
		var pos int64
		if err := s.pool.QueryRow(context.Background(), `SELECT coalesce(max(position), 0) FROM relay_checkpoints`).Scan(&pos); err != nil || pos < head {
			return fmt.Errorf("relay checkpoint %d (%v), head %d", pos, err, head)
		}
		return nil
	})
}

// publishProgram creates a program with one published episode and publishes it.
func publishProgram(ctx context.Context, h app.Handlers, i int) (string, error) {
	cats := []string{"drama", "news", "kids"}
	res, err := h.CreateProgram.Handle(ctx, app.CreateProgram{
		Title: fmt.Sprintf("Program %d", i), Category: cats[i%len(cats)], Language: "en", Tags: []string{"t"},
	})
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	ep, err := h.AddEpisode.Handle(ctx, app.AddEpisode{ProgramID: res.ID, Title: "Pilot", Number: 1, DurationSeconds: 60})
	if err != nil {
		return "", fmt.Errorf("add episode: %w", err)
	}
	if _, err := h.PublishEpisode.Handle(ctx, app.PublishEpisode{EpisodeID: ep.ID}); err != nil {
		return "", fmt.Errorf("publish episode: %w", err)
	}
	if _, err := h.PublishProgram.Handle(ctx, app.PublishProgram{ProgramID: res.ID}); err != nil {
		return "", fmt.Errorf("publish: %w", err)
	}
	return res.ID, nil
}

// changeCatalog publishes program i, and moves some programs to another category
// and unpublishes others: every kind of change to the category counts.
func changeCatalog(ctx context.Context, h app.Handlers, i int) error {
	id, err := publishProgram(ctx, h, i)
	if err != nil {
		return err
	}
	if i%3 == 0 {
		cat := "sport"
		if _, err := h.UpdateProgram.Handle(ctx, app.UpdateProgram{ProgramID: id, Category: &cat}); err != nil {
			return fmt.Errorf("recategorize: %w", err)
		}
	}
	if i%4 == 0 {
		if _, err := h.UnpublishProgram.Handle(ctx, app.UnpublishProgram{ProgramID: id}); err != nil {
			return fmt.Errorf("unpublish: %w", err)
		}
	}
	return nil
}

// readServing reads the serving catalog version and its published programs in one
// snapshot, as the discovery API's exact reads do.
func readServing(ctx context.Context, pool *pgxpool.Pool) (int, []string, error) {
	var (
		v   int
		ids []string
	)
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if v, err = rebuild.ServingVersion(ctx, tx, catalog.Name); err != nil {
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

// tableChecksum is checksums' md5 and row count of one table.
func tableChecksum(t *testing.T, pool *pgxpool.Pool, table string) string {
	t.Helper()
	var sum string
	var n int
	q := fmt.Sprintf(`SELECT md5(COALESCE(string_agg(t::text, E'\n' ORDER BY t::text), '')), count(*) FROM %s t`, pgx.Identifier{table}.Sanitize())
	if err := pool.QueryRow(context.Background(), q).Scan(&sum, &n); err != nil {
		t.Fatalf("checksum %s: %v", table, err)
	}
	return fmt.Sprintf("%s (%d rows)", sum, n)
}
