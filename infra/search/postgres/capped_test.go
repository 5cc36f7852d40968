package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/projections/search"
)

// TestBroadQueries checks what the conformance suite cannot reach with its small
// fixtures: a text that matches more than search.MaxHits documents. The documents
// that must win are written last, so they are not in the first MaxHits rows a
// plain index scan would return.
func TestBroadQueries(t *testing.T) {
	t.Parallel()
	_, idx, index := newIndex(t)
	ctx := context.Background()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var docs []search.Document
	add := func(n int, prefix, title, description, category string) []string {
		var ids []string
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("%s-%04d", prefix, i)
			ids = append(ids, id)
			docs = append(docs, search.Document{
				ID: id, Title: fmt.Sprintf("%s %d", title, i), Description: description,
				Category: category, Language: "en", PublishedAt: base.Add(time.Duration(len(docs)) * time.Minute), Version: 1,
			})
		}
		return ids
	}
	add(1200, "bulk", "Program", "A common story.", "drama")
	tigers := add(10, "tiger", "Program", "A common tiger.", "drama")
	rare := add(5, "rare", "Program", "A common thing.", "kids")
	titled := add(30, "titled", "Common Ground", "Talk.", "drama")
	for i := 0; i < len(docs); i += 500 {
		if err := idx.Upsert(ctx, index, docs[i:min(i+500, len(docs))]); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("title tier complete", func(t *testing.T) {
		res, err := idx.Search(ctx, index, search.Query{Text: "common", Limit: 30})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != search.MaxHits {
			t.Errorf("total %d, want the cap %d", res.Total, search.MaxHits)
		}
		want := slices.Clone(titled)
		slices.Reverse(want) // newest first
		if !slices.Equal(res.IDs, want) {
			t.Errorf("first page %v, want every title match, newest first: %v", res.IDs, want)
		}
	})
	t.Run("filter inside the sources", func(t *testing.T) {
		res, err := idx.Search(ctx, index, search.Query{Text: "common", Category: "kids"})
		if err != nil {
			t.Fatal(err)
		}
		got := slices.Clone(res.IDs)
		slices.Sort(got)
		if res.Total != len(rare) || !slices.Equal(got, rare) {
			t.Errorf("kids: total %d ids %v, want %v", res.Total, res.IDs, rare)
		}
		if n := res.Facets[search.FacetCategory]["drama"]; n == 0 {
			t.Errorf("facets %v: the unfiltered matches are counted too", res.Facets)
		}
	})
	t.Run("short last word filters", func(t *testing.T) {
		res, err := idx.Search(ctx, index, search.Query{Text: "common ti", Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		got := slices.Clone(res.IDs)
		slices.Sort(got)
		if res.Total != len(tigers) || !slices.Equal(got, tigers) {
			t.Errorf("total %d ids %v, want %v", res.Total, res.IDs, tigers)
		}
	})
	t.Run("deep pages end at the cap", func(t *testing.T) {
		res, err := idx.Search(ctx, index, search.Query{Text: "common", Page: search.MaxHits/20 + 1, Limit: 20})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.IDs) != 0 || res.Total != search.MaxHits {
			t.Errorf("page past the cap: %d ids, total %d", len(res.IDs), res.Total)
		}
	})
}
