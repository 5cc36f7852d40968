package rebuild_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/search"
)

// TestRebuildSearchIndex rebuilds the search projection with the embedded
// (PostgreSQL) index adapter: version 2 writes its own state table and index
// programs_v2, holds the same documents as programs_v1 when it takes over, and
// programs_v1 is dropped after the grace period.
func TestRebuildSearchIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	idx, err := searchpg.New(f.pool)
	if err != nil {
		t.Fatal(err)
	}
	def, err := rebuild.Search(f.pool, idx, idx, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendHistory(t, f.store, pt.Generate(21, 60))
	opts := f.options()
	opts.Grace = 300 * time.Millisecond
	m := f.manager(t, []rebuild.Definition{def}, opts)
	run(t, m)
	caughtUp(t, f, search.Name, 1)
	v1, err := idx.Documents(ctx, search.IndexName(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(v1) == 0 {
		t.Fatal("programs_v1 is empty")
	}
	if _, err := m.StartRebuild(ctx, search.Name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the switch", func() (bool, error) {
		_, serving := checkpointOf(t, f.pool, search.Name, 2)
		return serving, nil
	})
	v2, err := idx.Documents(ctx, search.IndexName(2))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v1, v2) {
		t.Errorf("programs_v2 (%d documents) differs from programs_v1 (%d)", len(v2), len(v1))
	}
	sameTables(t, f.pool, []string{search.StateTable}, 1, 2)
	waitFor(t, 30*time.Second, "programs_v1 to be dropped", func() (bool, error) {
		_, err := idx.Documents(ctx, search.IndexName(1))
		return errors.Is(err, search.ErrIndexNotFound), nil
	})
	if tableExists(t, f.pool, "search_state_v1") {
		t.Error("search_state_v1 is still there")
	}
}
