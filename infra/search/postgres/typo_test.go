package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/search/searchtest"
	"github.com/mediamesh/mediamesh/projections/search"
)

// TestTypoSource checks what the conformance suite leaves to the adapter: typo
// matches are looked for only when the exact matches do not fill the page, and
// they come from the vocabulary, which follows the index through Swap, is filled
// from the titles for an index that predates it, and goes away with DropIndex.
func TestTypoSource(t *testing.T) {
	t.Parallel()
	pool, idx, index := newIndex(t)
	ctx := context.Background()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var docs []search.Document
	for i := range 25 {
		docs = append(docs, search.Document{ID: fmt.Sprintf("exact-%02d", i), Title: fmt.Sprintf("Harbour Lights %d", i),
			Category: "drama", Language: "en", PublishedAt: base.Add(time.Duration(i) * time.Hour), Version: 1})
	}
	// The typo match is the newest document, so only its lower score puts it last.
	docs = append(docs, search.Document{ID: "typo", Title: "Harbor Nights", Category: "kids", Language: "fr",
		PublishedAt: base.Add(100 * time.Hour), Version: 1})
	if err := idx.Upsert(ctx, index, docs); err != nil {
		t.Fatal(err)
	}
	find := func(t *testing.T, index string, q search.Query) search.Result {
		t.Helper()
		res, err := idx.Search(ctx, index, q)
		if err != nil {
			t.Fatalf("Search(%+v): %v", q, err)
		}
		return res
	}

	t.Run("page filled by exact matches", func(t *testing.T) {
		res := find(t, index, search.Query{Text: "harbour", Limit: 20})
		if res.Total != 25 || len(res.IDs) != 20 || slices.Contains(res.IDs, "typo") {
			t.Errorf("total %d ids %v: want the 25 exact matches only", res.Total, res.IDs)
		}
		if res.Facets[search.FacetCategory]["kids"] != 0 {
			t.Errorf("facets %v count the typo match", res.Facets)
		}
	})
	t.Run("page not filled", func(t *testing.T) {
		res := find(t, index, search.Query{Text: "harbour", Limit: 20, Page: 2})
		if res.Total != 26 || len(res.IDs) != 6 || res.IDs[5] != "typo" {
			t.Errorf("total %d ids %v: want 5 exact matches, then the typo match, of 26", res.Total, res.IDs)
		}
		if res.Facets[search.FacetCategory]["kids"] != 1 {
			t.Errorf("facets %v miss the typo match", res.Facets)
		}
	})
	t.Run("filtered exact matches do not fill the page", func(t *testing.T) {
		res := find(t, index, search.Query{Text: "harbour", Category: "kids"})
		if !slices.Equal(res.IDs, []string{"typo"}) || res.Total != 1 {
			t.Errorf("total %d ids %v, want the typo match", res.Total, res.IDs)
		}
	})
	t.Run("every word needs a correction", func(t *testing.T) {
		if res := find(t, index, search.Query{Text: "harbor nightz"}); !slices.Equal(res.IDs, []string{"typo"}) {
			t.Errorf("harbor nightz: %v, want the typo match", res.IDs)
		}
		// Two swapped letters lose three trigrams of "nights" (below the threshold),
		// but are one typo.
		if res := find(t, index, search.Query{Text: "harbor nihgts"}); !slices.Equal(res.IDs, []string{"typo"}) {
			t.Errorf("harbor nihgts: %v, want the typo match", res.IDs)
		}
		if res := find(t, index, search.Query{Text: "harbr qwxzvy"}); len(res.IDs) != 0 {
			t.Errorf("harbr qwxzvy: %v, want nothing", res.IDs)
		}
	})
	t.Run("vocabulary of an older index", func(t *testing.T) {
		if _, err := pool.Exec(ctx, `DROP TABLE `+"searchwords_"+index); err != nil {
			t.Fatal(err)
		}
		if err := idx.EnsureIndex(ctx, index); err != nil {
			t.Fatal(err)
		}
		if res := find(t, index, search.Query{Text: "harbr"}); len(res.IDs) != 20 {
			t.Errorf("harbr after the vocabulary's backfill: %v, want a full page of typo matches", res.IDs)
		}
	})
	t.Run("swap and drop", func(t *testing.T) {
		other := searchtest.NewIndexName(t, idx)
		if err := idx.EnsureIndex(ctx, other); err != nil {
			t.Fatal(err)
		}
		if err := idx.Upsert(ctx, other, []search.Document{{ID: "x", Title: "Xylophone Hour", Version: 1}}); err != nil {
			t.Fatal(err)
		}
		if err := idx.Swap(ctx, index, other); err != nil {
			t.Fatal(err)
		}
		if res := find(t, index, search.Query{Text: "xylopone"}); !slices.Equal(res.IDs, []string{"x"}) {
			t.Errorf("xylopone after the swap: %v, want x", res.IDs)
		}
		if res := find(t, other, search.Query{Text: "harbr"}); len(res.IDs) != 20 {
			t.Errorf("harbr in the swapped index: %d ids, want 20", len(res.IDs))
		}
		if err := idx.DropIndex(ctx, other); err != nil {
			t.Fatal(err)
		}
		var left int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname LIKE $1`, "%"+other+"%").Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Errorf("%d tables or indexes of %s left after DropIndex", left, other)
		}
	})
}
