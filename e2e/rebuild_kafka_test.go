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
	"github.com/mediamesh/mediamesh/command/app/apptest"
	"github.com/mediamesh/mediamesh/events"
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
// is handed again every event the replay applied, and skips them (they are at or
// below its replay watermark, projection_checkpoints.replayed_through): after the
// switch version 2's Apply sees none of them, only later events. Commands carry on
// after the switch. At the end version 2 of each table equals, row for row, a
// clean projection of the whole event store: nothing between the replay and the
// live consumption was lost, and nothing redelivered was applied twice (the
// category counts move by deltas, so a double application would show there).
// Readers of the serving version never fail and never miss a seeded program.
func TestRebuildKafkaMode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newSystem(t, true)
	h := app.NewHandlers(s.store)

	const seeded = 30
	var seededIDs []string
	for i := range seeded {
		id, err := apptest.PublishProgram(ctx, h, i)
		if err != nil {
			t.Fatal(err)
		}
		seededIDs = append(seededIDs, id)
	}

	defs := rebuildDefinitions(t, s)
	applied := &appliedLog{}
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
		Wrap: func(p runtime.Projection, replay bool) runtime.Projection {
			if replay || p.Version() < 2 {
				return p
			}
			return &appliedRecorder{Projection: p, log: applied} // version 2 consuming content.events
		},
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
		var pos, replayed, frozen int64
		var serving bool
		if err := s.pool.QueryRow(ctx, `SELECT c.position, c.replayed_through, c.serving, r.frozen_position
			FROM projection_checkpoints c JOIN projection_rebuilds r ON r.name = c.name AND r.to_version = c.version
			WHERE c.name = $1 AND c.version = 2`, name).Scan(&pos, &replayed, &serving, &frozen); err != nil {
			t.Fatal(err)
		}
		if !serving || pos != head {
			t.Errorf("%s v2: position %d, serving %v; want %d and serving", name, pos, serving, head)
		}
		// The replay reached at least the replaced version's position at the switch.
		if replayed < frozen || frozen == 0 {
			t.Errorf("%s v2: replayed_through %d, want at least the replaced version's %d", name, replayed, frozen)
		}
		seen := applied.positions(name)
		var below int
		for _, p := range seen {
			if p <= replayed {
				below++
			}
		}
		if below > 0 {
			t.Errorf("%s v2 applied %d events from content.events at or below its replay watermark %d", name, below, replayed)
		}
		if len(seen) == 0 {
			t.Errorf("%s v2 applied nothing from content.events: the commands after the switch are missing", name)
		}
		t.Logf("%s v2: replayed through %d by the replay; applied %d events from content.events after the switch", name, replayed, len(seen))
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

// changeCatalog publishes program i, and moves some programs to another category
// and unpublishes others: every kind of change to the category counts.
func changeCatalog(ctx context.Context, h app.Handlers, i int) error {
	id, err := apptest.PublishProgram(ctx, h, i)
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

// appliedLog collects the positions applied by the wrapped projections, by name.
type appliedLog struct {
	mu     sync.Mutex
	byName map[string][]int64
}

func (l *appliedLog) positions(name string) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.byName[name])
}

// appliedRecorder records in log the positions of every batch its projection
// applied (a batch whose transaction is later rolled back and retried counts
// again: the record errs on the side of too many).
type appliedRecorder struct {
	runtime.Projection
	log *appliedLog
}

func (r *appliedRecorder) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	r.log.mu.Lock()
	if r.log.byName == nil {
		r.log.byName = map[string][]int64{}
	}
	for _, e := range batch {
		r.log.byName[r.Name()] = append(r.log.byName[r.Name()], e.Position)
	}
	r.log.mu.Unlock()
	return r.Projection.Apply(ctx, tx, batch)
}
