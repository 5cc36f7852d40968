package runtime_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// quiet is a logger for runtimes whose retries are expected.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fastOptions keep retries short so the tests stay fast.
func fastOptions() runtime.Options {
	return runtime.Options{BatchWait: 5 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: quiet}
}

func both() []runtime.Projection {
	return []runtime.Projection{catalog.New(nil), editorial.New(nil)}
}

func sinksOf(projs []runtime.Projection) []string {
	var out []string
	for _, p := range projs {
		out = append(out, p.Sinks()...)
	}
	return out
}

// hook wraps a projection so a test can inject failures around its Apply.
type hook struct {
	runtime.Projection
	// before and after run around the inner Apply; a non-nil error fails the
	// batch (its transaction is then rolled back).
	before, after func(ctx context.Context, batch []events.Envelope) error
	calls         atomic.Int64
}

func (h *hook) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	h.calls.Add(1)
	if h.before != nil {
		if err := h.before(ctx, batch); err != nil {
			return err
		}
	}
	if err := h.Projection.Apply(ctx, tx, batch); err != nil {
		return err
	}
	if h.after != nil {
		return h.after(ctx, batch)
	}
	return nil
}

// checkpoint reads a projection's committed position.
func checkpoint(t testing.TB, pool *pgxpool.Pool, name string) int64 {
	t.Helper()
	var pos int64
	err := pool.QueryRow(context.Background(), `SELECT position FROM projection_checkpoints WHERE name = $1 AND version = 1`, name).Scan(&pos)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("read checkpoint %s: %v", name, err)
	}
	return pos
}

// started runs r in the background until the test ends (or stop is called) and
// fails the test if Run returns an error.
func started(t testing.TB, r interface{ Run(context.Context) error }) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// startWaiter runs a Waiter for the test's lifetime.
func startWaiter(t testing.TB, pool *pgxpool.Pool) *runtime.Waiter {
	t.Helper()
	w, err := runtime.NewWaiter(pool, quiet)
	if err != nil {
		t.Fatal(err)
	}
	started(t, w)
	return w
}

// waitAll waits (bounded) until every projection has applied pos.
func waitAll(t testing.TB, w *runtime.Waiter, pos int64, names ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range names {
		if err := w.WaitForPosition(ctx, n, pos); err != nil {
			t.Fatalf("%s never reached %d: %v", n, pos, err)
		}
	}
}

// cleanChecksums projects hist once, directly, into a fresh database: the
// reference every other way of feeding the same events must equal.
func cleanChecksums(t testing.TB, newDB func(testing.TB) *pgxpool.Pool, hist []events.Envelope) map[string]string {
	t.Helper()
	pool := newDB(t)
	var sinks []string
	for _, p := range both() {
		pt.ApplyDirect(t, pool, p, hist, 99, 500)
		sinks = append(sinks, p.Sinks()...)
	}
	return pt.Checksums(t, pool, sinks)
}
