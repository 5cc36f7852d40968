package catalogtest_test

import (
	"reflect"
	"testing"

	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/catalog/catalogtest"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
)

// TestGenerate: exactly n events, deterministic, each program's order kept by
// Interleave with ascending positions, and a history the catalog folds exactly as
// the reference model does.
func TestGenerate(t *testing.T) {
	t.Parallel()
	progs := catalogtest.Generate(3, 3000)
	if n := catalogtest.Count(progs); n != 3000 {
		t.Fatalf("Count = %d, want 3000", n)
	}
	if again := catalogtest.Generate(3, 3000); !reflect.DeepEqual(again, progs) {
		t.Fatal("the same seed gave different programs")
	}
	hist := catalogtest.Interleave(9, progs)
	last := map[string]int64{}
	ids := map[string]bool{}
	for i, e := range hist {
		if i > 0 && e.Position <= hist[i-1].Position {
			t.Fatalf("position %d after %d", e.Position, hist[i-1].Position)
		}
		if e.Version != last[e.StreamID]+1 {
			t.Fatalf("%s: version %d after %d", e.StreamID, e.Version, last[e.StreamID])
		}
		last[e.StreamID] = e.Version
		if ids[e.EventID] {
			t.Fatalf("event id %s twice", e.EventID)
		}
		ids[e.EventID] = true
	}
	pool, _ := pgtest.NewDB(t)
	pt.ApplyDirect(t, pool, catalog.New(nil), hist, 1, 1000)
	pt.CheckModel(t, pool, hist, catalog.ProgramsTable, true)
}
