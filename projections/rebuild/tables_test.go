package rebuild_test

import (
	"context"
	"slices"
	"testing"

	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/rebuild"
)

// TestTablesCopyStorageParameters: a new version's tables keep the live ones'
// storage parameters (the catalog's fillfactor, which keeps its updates HOT), which
// CREATE TABLE … LIKE alone does not copy.
func TestTablesCopyStorageParameters(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	ctx := context.Background()
	s, err := rebuild.NewTables(pool, "catalog_programs_v1", "catalog_categories_v1")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // Prepare is idempotent
		if err := s.Prepare(ctx, 1, 2); err != nil {
			t.Fatal(err)
		}
	}
	for table, want := range map[string][]string{"catalog_programs_v2": {"fillfactor=70"}, "catalog_categories_v2": {}} {
		var got []string
		if err := pool.QueryRow(ctx, `SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = $1::regclass`, table).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s storage parameters %v, want %v", table, got, want)
		}
	}
}
