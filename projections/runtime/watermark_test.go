package runtime_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// recorder wraps a projection and records the positions its Apply was handed.
type recorder struct {
	runtime.Projection
	mu   sync.Mutex
	seen []int64
}

func (r *recorder) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	r.mu.Lock()
	for _, e := range batch {
		r.seen = append(r.seen, e.Position)
	}
	r.mu.Unlock()
	return r.Projection.Apply(ctx, tx, batch)
}

func (r *recorder) positions() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// watermark reads a projection's position and replay watermark (version 1).
func watermark(t testing.TB, pool *pgxpool.Pool, name string) (pos, replayed int64) {
	t.Helper()
	if err := pool.QueryRow(context.Background(), `SELECT position, replayed_through FROM projection_checkpoints WHERE name = $1 AND version = 1`,
		name).Scan(&pos, &replayed); err != nil {
		t.Fatalf("read checkpoint %s: %v", name, err)
	}
	return pos, replayed
}

// TestStreamSkipsReplayedEvents: a version fed in order from the global log up to
// a position (as a rebuild's replay feeds its new version) records it as its
// replay watermark; consuming the whole stream afterwards (a new consumer group
// starts at the oldest offset, with rewinds and duplicates) acknowledges every
// event but hands Apply none at or below the watermark, and every one above it;
// the sinks then equal a clean projection of the whole history.
func TestStreamSkipsReplayedEvents(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	hist := pt.Generate(34, 160)
	cut := len(hist) / 2
	mark := hist[cut-1].Position

	// The replay: the global log up to mark, in order.
	ordered := newRuntime(t, pool, pt.NewSource(hist[:cut]...), both(), fastOptions())
	stop := started(t, ordered)
	waitAll(t, startWaiter(t, pool), mark, catalog.Name, editorial.Name)
	stop()
	for _, name := range []string{catalog.Name, editorial.Name} {
		if pos, replayed := watermark(t, pool, name); pos != mark || replayed != mark {
			t.Fatalf("%s after the ordered phase: position %d, replayed_through %d; want both %d", name, pos, replayed, mark)
		}
	}

	// The stream from its beginning.
	recs := []*recorder{{Projection: catalog.New(nil)}, {Projection: editorial.New(nil)}}
	stream := newMemStream(t, hist, 4, 13)
	opts := fastOptions()
	opts.Stream = stream
	r := newRuntime(t, pool, pt.NewSource(hist...), []runtime.Projection{recs[0], recs[1]}, opts)
	stop = started(t, r)
	stream.waitFinished(t, 2)
	stop()

	var want []int64
	for _, e := range hist[cut:] {
		want = append(want, e.Position)
	}
	for _, rec := range recs {
		seen := rec.positions()
		for _, p := range seen {
			if p <= mark {
				t.Errorf("%s: Apply was handed position %d, at or below the replay watermark %d", rec.Name(), p, mark)
				break
			}
		}
		slices.Sort(seen)
		if seen = slices.Compact(seen); !slices.Equal(seen, want) {
			t.Errorf("%s: applied %d distinct positions, want the %d of the history above the watermark", rec.Name(), len(seen), len(want))
		}
		pos, replayed := watermark(t, pool, rec.Name())
		if head := hist[len(hist)-1].Position; pos != head || replayed != mark {
			t.Errorf("%s after the stream: position %d, replayed_through %d; want %d and %d", rec.Name(), pos, replayed, head, mark)
		}
	}
	if got, want := pt.Checksums(t, pool, sinksOf(both())), cleanChecksums(t, newDB, hist); !maps.Equal(got, want) {
		t.Errorf("sinks differ from a clean projection\n got %v\nwant %v", got, want)
	}
}

// TestOrderedWatermarkOnlyFollowsAWatermark: once a stream consumer has moved a
// version's position past its replay watermark, the position is no watermark
// (partitions are consumed independently), so an ordered runtime of the same
// version that is still running (a rebuild's replay in its last moments, in
// another process) applies above the position but leaves replayed_through where
// it was; a fresh version's watermark follows the ordered position.
func TestOrderedWatermarkOnlyFollowsAWatermark(t *testing.T) {
	t.Parallel()
	hist := pt.Generate(35, 40)
	head := hist[len(hist)-1].Position
	for _, tc := range []struct {
		name               string
		position, replayed int64 // the row before the ordered runtime starts; -1: no row
		wantReplayed       int64
	}{
		{name: "fresh version", position: -1, wantReplayed: head},
		{name: "watermark", position: hist[9].Position, replayed: hist[9].Position, wantReplayed: head},
		{name: "moved by a stream", position: hist[9].Position, replayed: hist[4].Position, wantReplayed: hist[4].Position},
		{name: "never fed in order", position: hist[9].Position, replayed: 0, wantReplayed: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := newDB(t)
			if tc.position >= 0 {
				if _, err := pool.Exec(context.Background(), `INSERT INTO projection_checkpoints (name, version, position, replayed_through, serving)
					VALUES ($1, 1, $2, $3, true)`, catalog.Name, tc.position, tc.replayed); err != nil {
					t.Fatal(err)
				}
			}
			r := newRuntime(t, pool, pt.NewSource(hist...), []runtime.Projection{catalog.New(nil)}, fastOptions())
			stop := started(t, r)
			waitAll(t, startWaiter(t, pool), head, catalog.Name)
			stop()
			if pos, replayed := watermark(t, pool, catalog.Name); pos != head || replayed != tc.wantReplayed {
				t.Errorf("position %d, replayed_through %d; want %d and %d", pos, replayed, head, tc.wantReplayed)
			}
		})
	}
}
