package postgres_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/projections/search"
)

// TestGINOptionsUpgrade checks that EnsureIndex gives the GIN indexes of an index
// created by an earlier version (fastupdate off) the current storage options, and
// that documents written before and after stay searchable.
func TestGINOptionsUpgrade(t *testing.T) {
	t.Parallel()
	pool, idx, index := newIndex(t)
	ctx := context.Background()
	gin := []string{"search_" + index + "_tsv", "search_" + index + "_title_tsv", "searchwords_" + index + "_trgm"}
	options := func() []string {
		t.Helper()
		var out []string
		for _, name := range gin {
			var opts []string
			if err := pool.QueryRow(ctx, `SELECT coalesce(reloptions, '{}') FROM pg_class WHERE relname = $1`, name).Scan(&opts); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			slices.Sort(opts)
			out = append(out, name+": "+strings.Join(opts, ","))
		}
		return out
	}
	want := []string{
		gin[0] + ": fastupdate=on,gin_pending_list_limit=64",
		gin[1] + ": fastupdate=on,gin_pending_list_limit=64",
		gin[2] + ": fastupdate=on,gin_pending_list_limit=64",
	}
	if got := options(); !slices.Equal(got, want) {
		t.Fatalf("new index: %q, want %q", got, want)
	}
	if err := idx.Upsert(ctx, index, []search.Document{{ID: "a", Version: 1, Title: "Nordic Noir"}}); err != nil {
		t.Fatal(err)
	}
	// The layout of earlier versions.
	for _, name := range gin {
		if _, err := pool.Exec(ctx, `ALTER INDEX "`+name+`" RESET (gin_pending_list_limit)`); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `ALTER INDEX "`+name+`" SET (fastupdate = off)`); err != nil {
			t.Fatal(err)
		}
	}
	if err := idx.EnsureIndex(ctx, index); err != nil {
		t.Fatal(err)
	}
	if got := options(); !slices.Equal(got, want) {
		t.Fatalf("upgraded index: %q, want %q", got, want)
	}
	if err := idx.Upsert(ctx, index, []search.Document{{ID: "b", Version: 1, Title: "Nordic Light"}}); err != nil {
		t.Fatal(err)
	}
	res, err := idx.Search(ctx, index, search.Query{Text: "nordik", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.IDs)
	if !slices.Equal(res.IDs, []string{"a", "b"}) {
		t.Fatalf("typo search after upgrade: %v, want [a b]", res.IDs)
	}
}

// TestVocabularyHoldsEachWordOnce checks that upserts add the title words the
// vocabulary lacks, once each, whether a word is new to the batch, repeated in
// it or already known.
func TestVocabularyHoldsEachWordOnce(t *testing.T) {
	t.Parallel()
	pool, idx, index := newIndex(t)
	ctx := context.Background()
	batches := [][]search.Document{
		{{ID: "a", Version: 1, Title: "Nordic Noir"}, {ID: "b", Version: 1, Title: "Noir Nights"}},
		{{ID: "c", Version: 1, Title: "Nordic Nights"}, {ID: "d", Version: 1, Title: "Café Nordic"}},
		{{ID: "a", Version: 2, Title: "Nordic Noir Returns"}},
		{{ID: "a", Version: 1, Title: "Stale Title"}}, // older: not written, so not added
	}
	for _, b := range batches {
		if err := idx.Upsert(ctx, index, b); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := pool.Query(ctx, `SELECT word FROM "searchwords_`+index+`" ORDER BY word`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var w string
		if err := rows.Scan(&w); err != nil {
			t.Fatal(err)
		}
		got = append(got, w)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"cafe", "nights", "noir", "nordic", "returns"}
	if !slices.Equal(got, want) {
		t.Fatalf("vocabulary %q, want %q", got, want)
	}
}
