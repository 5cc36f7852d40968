package rebuild_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// fixture is a fresh database with the PostgreSQL event store and the catalog and
// editorial projections defined for a Manager.
type fixture struct {
	pool    *pgxpool.Pool
	store   *pgstore.Store
	counter rebuild.Counter
	defs    []rebuild.Definition
	log     *slog.Logger
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	f := &fixture{pool: pool, store: pgstore.New(pool), counter: sqlCounter{pool}}
	if testing.Verbose() {
		f.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	} else {
		f.log = slog.New(slog.DiscardHandler)
	}
	for _, p := range []runtime.Projection{catalog.New(nil), editorial.New(nil)} {
		d, err := rebuild.Rebuildable(pool, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.defs = append(f.defs, d)
	}
	f.defs = append(f.defs,
		rebuild.Telemetry("engagement", func(context.Context) ([]rebuild.Status, error) {
			return []rebuild.Status{{Name: "engagement", Version: 1, Status: rebuild.StatusRunning}}, nil
		}),
		rebuild.Processor(pool, "thumbnails"),
	)
	return f
}

// sqlCounter counts events of the PostgreSQL event store (as infra/opscli's
// EventCounter does).
type sqlCounter struct{ pool *pgxpool.Pool }

func (c sqlCounter) CountRange(ctx context.Context, after, upTo int64) (int64, error) {
	var n int64
	err := c.pool.QueryRow(ctx, `SELECT count(*) FROM eventstore_events WHERE position > $1 AND position <= $2`, after, upTo).Scan(&n)
	return n, err
}

// options are fast settings for tests.
func (f *fixture) options() rebuild.Options {
	return rebuild.Options{
		Runtime:         runtime.Options{BatchWait: 5 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		ReplayBatchSize: 200,
		Grace:           time.Hour,
		Lease:           2 * time.Second,
		Poll:            50 * time.Millisecond,
		ProgressEvery:   20 * time.Millisecond,
		Counter:         f.counter,
		Logger:          f.log,
	}
}

func (f *fixture) manager(t *testing.T, defs []rebuild.Definition, opts rebuild.Options) *rebuild.Manager {
	t.Helper()
	if defs == nil {
		defs = f.defs
	}
	m, err := rebuild.New(f.pool, f.store, defs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// run runs m until the returned stop is called (or the test ends).
func run(t *testing.T, m *rebuild.Manager) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds or timeout passes: the conditions are
// database states that background goroutines reach on their own.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// appendHistory appends generated envelopes to the store in their order (each
// stream's events stay in order; streams are spread over a few writers).
func appendHistory(t *testing.T, store *pgstore.Store, evs []events.Envelope) {
	t.Helper()
	const writers = 4
	per := make([][]events.Envelope, writers)
	for _, e := range evs {
		h := fnv.New32a()
		h.Write([]byte(e.StreamID))
		i := h.Sum32() % writers
		per[i] = append(per[i], e)
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range per {
		wg.Go(func() {
			for _, e := range per[i] {
				in := events.Envelope{EventID: e.EventID, Type: e.Type, OccurredAt: e.OccurredAt, Metadata: e.Metadata, Data: e.Data}
				if _, err := store.Append(context.Background(), e.StreamID, events.ExpectAny, []events.Envelope{in}); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func head(t *testing.T, f *fixture) int64 {
	t.Helper()
	h, err := f.store.HeadPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// replayedThrough reads a version's replay watermark (projection_checkpoints).
func replayedThrough(t *testing.T, pool *pgxpool.Pool, name string, version int) int64 {
	t.Helper()
	var w int64
	if err := pool.QueryRow(context.Background(), `SELECT replayed_through FROM projection_checkpoints WHERE name = $1 AND version = $2`,
		name, version).Scan(&w); err != nil {
		t.Fatalf("replayed_through of %s v%d: %v", name, version, err)
	}
	return w
}

func checkpointOf(t *testing.T, pool *pgxpool.Pool, name string, version int) (int64, bool) {
	t.Helper()
	var pos int64
	var serving bool
	err := pool.QueryRow(context.Background(), `SELECT position, serving FROM projection_checkpoints WHERE name = $1 AND version = $2`,
		name, version).Scan(&pos, &serving)
	if errors.Is(err, pgx.ErrNoRows) {
		return -1, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return pos, serving
}

// caughtUp waits until version v of name has applied everything up to the head.
func caughtUp(t *testing.T, f *fixture, name string, v int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%s v%d to catch up", name, v), func() (bool, error) {
		pos, _ := checkpointOf(t, f.pool, name, v)
		return pos >= head(t, f), nil
	})
}

// tableDiff returns the rows of a that b lacks and the other way round, as text.
func tableDiff(t *testing.T, pool *pgxpool.Pool, a, b string) []string {
	t.Helper()
	var out []string
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		rows, err := pool.Query(context.Background(),
			fmt.Sprintf(`SELECT x::text FROM (SELECT * FROM %s EXCEPT ALL SELECT * FROM %s) x`,
				pgx.Identifier{pair[0]}.Sanitize(), pgx.Identifier{pair[1]}.Sanitize()))
		if err != nil {
			t.Fatal(err)
		}
		diff, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range diff {
			out = append(out, fmt.Sprintf("only in %s: %s", pair[0], d))
		}
	}
	sort.Strings(out)
	return out
}

func rowCount(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// sameTables fails unless every table of the projections' two versions holds the
// same rows.
func sameTables(t *testing.T, pool *pgxpool.Pool, tables []string, a, b int) {
	t.Helper()
	for _, tbl := range tables {
		ta, _ := rebuild.VersionedTable(tbl, a)
		tb, _ := rebuild.VersionedTable(tbl, b)
		if diff := tableDiff(t, pool, ta, tb); len(diff) > 0 {
			t.Errorf("%s and %s differ (%d rows):\n%s", ta, tb, len(diff), strings.Join(diff[:min(len(diff), 10)], "\n"))
		}
	}
}

func tableExists(t *testing.T, pool *pgxpool.Pool, table string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// gate is a projection that applies like inner until armed and limit events have
// been applied, then blocks every Apply until its context ends: a process that
// dies in the middle of a rebuild.
type gate struct {
	runtime.Projection
	limit   int64
	applied *atomic.Int64
	reached chan struct{}
	once    *sync.Once
}

func (g gate) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	if g.applied.Load() >= g.limit {
		g.once.Do(func() { close(g.reached) })
		<-ctx.Done()
		return ctx.Err()
	}
	if err := g.Projection.Apply(ctx, tx, batch); err != nil {
		return err
	}
	g.applied.Add(int64(len(batch)))
	return nil
}

// counting is a projection that counts the events it was given.
type counting struct {
	runtime.Projection
	n *atomic.Int64
}

func (c counting) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	if err := c.Projection.Apply(ctx, tx, batch); err != nil {
		return err
	}
	c.n.Add(int64(len(batch)))
	return nil
}
