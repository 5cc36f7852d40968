// Package searchtest is the one conformance suite of the search port: every search
// adapter (PostgreSQL, Meilisearch) runs Run against its real server, so both answer
// the same queries the same way: typo tolerance, field weights, filters, facets,
// stable paging, the version guard of upserts and tombstones, and index lifecycle.
//
// Each subtest works in its own, randomly named index and drops it at the end, so
// subtests run in parallel and several runs can share one server.
package searchtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/projections/search"
)

// Index is what an adapter must implement to run the suite.
type Index interface {
	search.Writer
	search.Reader
	search.Admin
}

// opTimeout bounds every step; Meilisearch applies writes asynchronously and the
// adapter waits for its tasks within this.
const opTimeout = 30 * time.Second

// base is the published time of the fixtures' oldest document.
var base = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// at returns base plus h hours and µs microseconds (PostgreSQL keeps microseconds).
func at(h, µs int) time.Time {
	return base.Add(time.Duration(h)*time.Hour + time.Duration(µs)*time.Microsecond)
}

// Run runs every conformance test against idx.
func Run(t *testing.T, idx Index) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, idx Index, index string)
	}{
		{"EnsureAndDrop", testEnsureAndDrop},
		{"RoundTrip", testRoundTrip},
		{"TextMatching", testTextMatching},
		{"FieldWeights", testFieldWeights},
		{"FiltersAndFacets", testFiltersAndFacets},
		{"PagingAndTies", testPagingAndTies},
		{"MatchAll", testMatchAll},
		{"VersionGuard", testVersionGuard},
		{"RedeliveredBatch", testRedeliveredBatch},
		{"TombstoneFirst", testTombstoneFirst},
		{"Swap", testSwap},
		{"InvalidNames", testInvalidNames},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, idx, NewIndexName(t, idx))
		})
	}
}

// NewIndexName returns a fresh random index name that is dropped when t ends.
func NewIndexName(t testing.TB, idx search.Admin) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "st_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := idx.DropIndex(ctx, name); err != nil {
			t.Errorf("drop index %s: %v", name, err)
		}
	})
	return name
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

func ensure(t *testing.T, idx Index, index string) {
	t.Helper()
	if err := idx.EnsureIndex(ctxFor(t), index); err != nil {
		t.Fatalf("EnsureIndex(%s): %v", index, err)
	}
}

func upsert(t *testing.T, idx Index, index string, docs ...search.Document) {
	t.Helper()
	if err := idx.Upsert(ctxFor(t), index, docs); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
}

func del(t *testing.T, idx Index, index string, ts ...search.Tombstone) {
	t.Helper()
	if err := idx.Delete(ctxFor(t), index, ts); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func find(t *testing.T, idx Index, index string, q search.Query) search.Result {
	t.Helper()
	res, err := idx.Search(ctxFor(t), index, q)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	if res.IDs == nil {
		t.Fatalf("Search(%+v): IDs is nil, want a non-nil slice", q)
	}
	for _, f := range []string{search.FacetCategory, search.FacetLanguage} {
		if res.Facets[f] == nil {
			t.Fatalf("Search(%+v): facet %q missing (facets %v)", q, f, res.Facets)
		}
	}
	return res
}

func documents(t *testing.T, idx Index, index string) []search.Document {
	t.Helper()
	docs, err := idx.Documents(ctxFor(t), index)
	if err != nil {
		t.Fatalf("Documents: %v", err)
	}
	return docs
}

// normalize makes empty and nil slices equal, so adapters may return either.
func normalize(docs []search.Document) []search.Document {
	out := make([]search.Document, len(docs))
	for i, d := range docs {
		if len(d.Tags) == 0 {
			d.Tags = nil
		}
		if len(d.EpisodeTitles) == 0 {
			d.EpisodeTitles = nil
		}
		d.PublishedAt = d.PublishedAt.UTC()
		out[i] = d
	}
	return out
}

func wantDocuments(t *testing.T, idx Index, index string, want ...search.Document) {
	t.Helper()
	want = slices.Clone(want)
	slices.SortFunc(want, func(a, b search.Document) int { return strings.Compare(a.ID, b.ID) })
	got := normalize(documents(t, idx, index))
	if !reflect.DeepEqual(got, normalize(want)) {
		t.Fatalf("documents:\n got  %+v\n want %+v", got, normalize(want))
	}
}

func wantIDs(t *testing.T, what string, got search.Result, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got.IDs, want) {
		t.Fatalf("%s: ids %v, want %v", what, got.IDs, want)
	}
}

// doc builds a fixture document with the defaults the tests do not care about.
func doc(id, title string, version int64, published time.Time) search.Document {
	return search.Document{
		ID: id, Title: title, Category: "drama", Language: "en",
		Tags: []string{}, PublishedAt: published, Version: version,
	}
}

func testEnsureAndDrop(t *testing.T, idx Index, index string) {
	ensure(t, idx, index)
	ensure(t, idx, index) // idempotent
	res := find(t, idx, index, search.Query{Text: "anything"})
	if res.Total != 0 || len(res.IDs) != 0 {
		t.Fatalf("new index: %+v, want empty", res)
	}
	upsert(t, idx, index, doc("p1", "Nordic Noir", 1, at(0, 0)))
	wantIDs(t, "after upsert", find(t, idx, index, search.Query{Text: "nordic"}), "p1")

	if err := idx.DropIndex(ctxFor(t), index); err != nil {
		t.Fatalf("DropIndex: %v", err)
	}
	if err := idx.DropIndex(ctxFor(t), index); err != nil {
		t.Fatalf("DropIndex of a dropped index: %v, want nil", err)
	}
	if _, err := idx.Search(ctxFor(t), index, search.Query{Text: "nordic"}); !errors.Is(err, search.ErrIndexNotFound) {
		t.Fatalf("Search of a dropped index: %v, want ErrIndexNotFound", err)
	}
	if _, err := idx.Documents(ctxFor(t), index); !errors.Is(err, search.ErrIndexNotFound) {
		t.Fatalf("Documents of a dropped index: %v, want ErrIndexNotFound", err)
	}
	ensure(t, idx, index)
	if res := find(t, idx, index, search.Query{}); res.Total != 0 {
		t.Fatalf("re-created index holds %d documents, want 0", res.Total)
	}
}

func testRoundTrip(t *testing.T, idx Index, index string) {
	ensure(t, idx, index)
	docs := []search.Document{
		{
			ID: "0190d5a0-0000-7000-8000-000000000001", Title: "Nordic Noir", Description: "Cold cases, colder nights.",
			Category: "drama", Language: "en-GB", Tags: []string{"nordic", "crime"},
			EpisodeTitles: []string{"Pilot", "The Ice"}, EpisodeCount: 2, PublishedAt: at(5, 123456), Version: 7,
		},
		{
			ID: "0190d5a0-0000-7000-8000-000000000002", Title: "Café Society — «Ünïcödé»", Description: "",
			Category: "lifestyle", Language: "fr", Tags: nil, EpisodeTitles: nil, PublishedAt: at(1, 0), Version: 1,
		},
	}
	upsert(t, idx, index, docs...)
	wantDocuments(t, idx, index, docs...)
}

func testTextMatching(t *testing.T, idx Index, index string) {
	ensure(t, idx, index)
	upsert(t, idx, index,
		search.Document{ID: "noir", Title: "Nordic Noir", Description: "Cold cases, colder nights.", Category: "drama", Language: "en-GB", Tags: []string{"crime"}, PublishedAt: at(1, 0), Version: 1},
		search.Document{ID: "cafe", Title: "Café Society", Description: "Coffee and gossip.", Category: "lifestyle", Language: "fr", PublishedAt: at(2, 0), Version: 1},
		search.Document{ID: "garden", Title: "Gardening Today", Description: "Roses and tomatoes.", Category: "lifestyle", Language: "en", PublishedAt: at(3, 0), Version: 1},
		search.Document{ID: "space", Title: "Journey Beyond the Stars", Description: "A crew of explorers.", Category: "scifi", Language: "en", PublishedAt: at(4, 0), Version: 1},
	)
	tests := []struct {
		text      string
		wantFirst string   // "" when nothing may match
		wantNot   []string // must not be among the hits
	}{
		{text: "nordic noir", wantFirst: "noir", wantNot: []string{"cafe", "garden", "space"}},
		{text: "nordik noir", wantFirst: "noir", wantNot: []string{"cafe", "garden", "space"}}, // a typo
		{text: "Nordic", wantFirst: "noir"},
		{text: "nord", wantFirst: "noir"},           // prefix of the last word
		{text: "gardning", wantFirst: "garden"},     // a letter missing
		{text: "cafe", wantFirst: "cafe"},           // accents fold
		{text: "CAFÉ SOCIETY", wantFirst: "cafe"},   // and case
		{text: "tomatoes", wantFirst: "garden"},     // description
		{text: "journey stars", wantFirst: "space"}, // words need not be adjacent
		{text: "qwxzv", wantFirst: ""},
	}
	for _, tc := range tests {
		res := find(t, idx, index, search.Query{Text: tc.text})
		if tc.wantFirst == "" {
			if res.Total != 0 || len(res.IDs) != 0 {
				t.Errorf("%q: %+v, want no hits", tc.text, res)
			}
			continue
		}
		if len(res.IDs) == 0 || res.IDs[0] != tc.wantFirst {
			t.Errorf("%q: ids %v, want %q first", tc.text, res.IDs, tc.wantFirst)
		}
		if res.Total != len(res.IDs) {
			t.Errorf("%q: total %d, but %d ids on the only page", tc.text, res.Total, len(res.IDs))
		}
		for _, not := range tc.wantNot {
			if slices.Contains(res.IDs, not) {
				t.Errorf("%q: ids %v contain %q", tc.text, res.IDs, not)
			}
		}
	}
}

func testFieldWeights(t *testing.T, idx Index, index string) {
	ensure(t, idx, index)
	// "falcon" occurs once per document, each time in another field; the newest
	// document has the weakest field, so publication order cannot explain the ranking.
	upsert(t, idx, index,
		search.Document{ID: "w-desc", Title: "Morning Skies", Description: "A falcon circles the valley.", Category: "nature", Language: "en", PublishedAt: at(9, 0), Version: 1},
		search.Document{ID: "w-episode", Title: "Wild Wings", Description: "Birds of prey.", EpisodeTitles: []string{"The Peregrine", "Falcon Rising"}, EpisodeCount: 2, Category: "nature", Language: "en", PublishedAt: at(8, 0), Version: 1},
		search.Document{ID: "w-tags", Title: "Hunters of the Air", Description: "Raptors up close.", Tags: []string{"falcon", "raptors"}, Category: "nature", Language: "en", PublishedAt: at(7, 0), Version: 1},
		search.Document{ID: "w-title", Title: "The Falcon", Description: "A documentary.", Category: "nature", Language: "en", PublishedAt: at(6, 0), Version: 1},
	)
	res := find(t, idx, index, search.Query{Text: "falcon"})
	wantIDs(t, "title > tags > episode titles > description", res, "w-title", "w-tags", "w-episode", "w-desc")
	if res.Total != 4 {
		t.Fatalf("total %d, want 4", res.Total)
	}
}

func testFiltersAndFacets(t *testing.T, idx Index, index string) {
	ensure(t, idx, index)
	upsert(t, idx, index,
		search.Document{ID: "d1", Title: "Detective Story", Category: "crime", Language: "en", PublishedAt: at(4, 0), Version: 1},
		search.Document{ID: "d2", Title: "Detective Kids", Category: "kids", Language: "en", PublishedAt: at(3, 0), Version: 1},
		search.Document{ID: "d3", Title: "Le Détective", Category: "crime", Language: "fr", PublishedAt: at(2, 0), Version: 1},
		search.Document{ID: "d4", Title: "Detective Nights", Category: "drama", Language: "sv", PublishedAt: at(1, 0), Version: 1},
		search.Document{ID: "d5", Title: "Gardening Today", Category: "lifestyle", Language: "en", PublishedAt: at(5, 0), Version: 1},
	)
	// Facets count the text's matches before the category and language filters.
	wantFacets := map[string]map[string]int{
		search.FacetCategory: {"crime": 2, "kids": 1, "drama": 1},
		search.FacetLanguage: {"en": 2, "fr": 1, "sv": 1},
	}
	tests := []struct {
		name               string
		category, language string
		want               []string // as a set
	}{
		{name: "no filter", want: []string{"d1", "d2", "d3", "d4"}},
		{name: "category", category: "crime", want: []string{"d1", "d3"}},
		{name: "language", language: "en", want: []string{"d1", "d2"}},
		{name: "both", category: "crime", language: "en", want: []string{"d1"}},
		{name: "nothing", category: "kids", language: "fr", want: []string{}},
		{name: "unknown category", category: "lifestyle", want: []string{}},
	}
	for _, tc := range tests {
		res := find(t, idx, index, search.Query{Text: "detective", Category: tc.category, Language: tc.language})
		got := slices.Clone(res.IDs)
		slices.Sort(got)
		if !slices.Equal(got, tc.want) || res.Total != len(tc.want) {
			t.Errorf("%s: ids %v total %d, want %v", tc.name, res.IDs, res.Total, tc.want)
		}
		if !reflect.DeepEqual(res.Facets, wantFacets) {
			t.Errorf("%s: facets %v, want %v", tc.name, res.Facets, wantFacets)
		}
	}
	// A text that matches nothing has empty facets.
	res := find(t, idx, index, search.Query{Text: "qwxzv"})
	if len(res.Facets[search.FacetCategory]) != 0 || len(res.Facets[search.FacetLanguage]) != 0 {
		t.Errorf("no match: facets %v, want empty", res.Facets)
	}
}

func testPagingAndTies(t *testing.T, idx Index, index string) {
	ensure(t, idx, index)
	same := func(id string, published time.Time) search.Document {
		d := doc(id, "Harbour Lights", 1, published)
		d.Description = "Boats at dusk."
		return d
	}
	// Equally relevant: newest first, then by id.
	upsert(t, idx, index,
		same("h-c", at(2, 0)),
		same("h-e", at(0, 0)),
		same("h-a", at(2, 0)),
		same("h-d", at(1, 0)),
		same("h-b", at(3, 0)),
	)
	order := []string{"h-b", "h-a", "h-c", "h-d", "h-e"}
	var all []string
	for page := 1; page <= 3; page++ {
		res := find(t, idx, index, search.Query{Text: "harbour", Page: page, Limit: 2})
		if res.Total != 5 {
			t.Fatalf("page %d: total %d, want 5", page, res.Total)
		}
		all = append(all, res.IDs...)
	}
	if !slices.Equal(all, order) {
		t.Fatalf("pages joined: %v, want %v", all, order)
	}
	res := find(t, idx, index, search.Query{Text: "harbour", Page: 4, Limit: 2})
	if len(res.IDs) != 0 || res.Total != 5 {
		t.Fatalf("page past the end: %+v, want no ids and total 5", res)
	}
	// Defaults: page 1, DefaultLimit.
	wantIDs(t, "defaults", find(t, idx, index, search.Query{Text: "harbour"}), order...)
}

func testMatchAll(t *testing.T, idx Index, index string) {
	ensure(t, idx, index)
	a := doc("a", "Alpha", 1, at(1, 0))
	b := doc("b", "Bravo", 1, at(3, 0))
	b.Category, b.Language = "kids", "fr"
	c := doc("c", "Charlie", 1, at(2, 0))
	upsert(t, idx, index, a, b, c, doc("gone", "Delta", 1, at(4, 0)))
	del(t, idx, index, search.Tombstone{ID: "gone", Version: 2})
	res := find(t, idx, index, search.Query{})
	wantIDs(t, "empty text matches all, newest first", res, "b", "c", "a")
	if res.Total != 3 {
		t.Fatalf("total %d, want 3", res.Total)
	}
	want := map[string]map[string]int{
		search.FacetCategory: {"drama": 2, "kids": 1},
		search.FacetLanguage: {"en": 2, "fr": 1},
	}
	if !reflect.DeepEqual(res.Facets, want) {
		t.Fatalf("facets %v, want %v", res.Facets, want)
	}
	wantIDs(t, "empty text with a filter", find(t, idx, index, search.Query{Category: "drama"}), "c", "a")
}

func testVersionGuard(t *testing.T, idx Index, index string) {
	ensure(t, idx, index)
	v3 := doc("p", "Nordic Noir", 3, at(1, 0))
	upsert(t, idx, index, v3)
	wantDocuments(t, idx, index, v3)

	steps := []struct {
		name    string
		apply   func()
		want    []search.Document
		visible bool // whether "nordic" finds p
	}{
		{"older upsert is ignored", func() { upsert(t, idx, index, doc("p", "Old Title", 2, at(1, 0))) }, []search.Document{v3}, true},
		{"equal version is ignored", func() { upsert(t, idx, index, doc("p", "Same Version", 3, at(1, 0))) }, []search.Document{v3}, true},
		{"older tombstone is ignored", func() { del(t, idx, index, search.Tombstone{ID: "p", Version: 3}) }, []search.Document{v3}, true},
		{"newer upsert wins", func() { upsert(t, idx, index, doc("p", "Nordic Noir Restored", 4, at(1, 0))) }, []search.Document{doc("p", "Nordic Noir Restored", 4, at(1, 0))}, true},
		{"newer tombstone deletes", func() { del(t, idx, index, search.Tombstone{ID: "p", Version: 5}) }, nil, false},
		{"deleting again changes nothing", func() { del(t, idx, index, search.Tombstone{ID: "p", Version: 5}) }, nil, false},
		{"redelivered older upsert stays deleted", func() { upsert(t, idx, index, doc("p", "Nordic Noir Restored", 4, at(1, 0))) }, nil, false},
		{"equal upsert stays deleted", func() { upsert(t, idx, index, doc("p", "Nordic Noir", 5, at(1, 0))) }, nil, false},
		{"republished at a newer version", func() { upsert(t, idx, index, doc("p", "Nordic Noir", 6, at(1, 0))) }, []search.Document{doc("p", "Nordic Noir", 6, at(1, 0))}, true},
	}
	for _, s := range steps {
		s.apply()
		got := normalize(documents(t, idx, index))
		if len(got) == 0 {
			got = nil
		}
		if !reflect.DeepEqual(got, normalize(s.want)) && !(len(got) == 0 && len(s.want) == 0) {
			t.Fatalf("%s: documents %+v, want %+v", s.name, got, s.want)
		}
		res := find(t, idx, index, search.Query{Text: "nordic"})
		if found := slices.Contains(res.IDs, "p"); found != s.visible {
			t.Fatalf("%s: search finds p = %v, want %v (%+v)", s.name, found, s.visible, res)
		}
		if all := find(t, idx, index, search.Query{}); all.Total != len(s.want) {
			t.Fatalf("%s: match-all total %d, want %d", s.name, all.Total, len(s.want))
		}
	}
}

func testRedeliveredBatch(t *testing.T, idx Index, index string) {
	ensure(t, idx, index)
	// One batch names p three times and q twice, out of order: the highest wins.
	upsert(t, idx, index,
		doc("p", "Version Two", 2, at(0, 0)),
		doc("q", "Queue Five", 5, at(0, 0)),
		doc("p", "Version Five", 5, at(0, 0)),
		doc("p", "Version Three", 3, at(0, 0)),
		doc("q", "Queue Four", 4, at(0, 0)),
	)
	wantDocuments(t, idx, index, doc("p", "Version Five", 5, at(0, 0)), doc("q", "Queue Five", 5, at(0, 0)))
	// The same batch again (a redelivery) changes nothing.
	upsert(t, idx, index, doc("p", "Version Three", 3, at(0, 0)), doc("q", "Queue Four", 4, at(0, 0)))
	del(t, idx, index, search.Tombstone{ID: "q", Version: 4}, search.Tombstone{ID: "q", Version: 6}, search.Tombstone{ID: "q", Version: 5})
	wantDocuments(t, idx, index, doc("p", "Version Five", 5, at(0, 0)))
	wantIDs(t, "deleted q", find(t, idx, index, search.Query{Text: "queue"}))
}

func testTombstoneFirst(t *testing.T, idx Index, index string) {
	ensure(t, idx, index)
	// A delete that overtakes the upserts it follows (another partition owner, a
	// shuffled redelivery) must still win over them.
	del(t, idx, index, search.Tombstone{ID: "p", Version: 4})
	upsert(t, idx, index, doc("p", "Early", 2, at(0, 0)), doc("r", "Other", 1, at(0, 0)))
	wantDocuments(t, idx, index, doc("r", "Other", 1, at(0, 0)))
	upsert(t, idx, index, doc("p", "Later", 7, at(0, 0)))
	wantDocuments(t, idx, index, doc("p", "Later", 7, at(0, 0)), doc("r", "Other", 1, at(0, 0)))
	wantIDs(t, "later", find(t, idx, index, search.Query{Text: "later"}), "p")
}

func testSwap(t *testing.T, idx Index, a string) {
	b := NewIndexName(t, idx)
	ensure(t, idx, a)
	ensure(t, idx, b)
	x := doc("x", "Xylophone Hour", 1, at(0, 0))
	y := doc("y", "Yodel Time", 1, at(0, 0))
	upsert(t, idx, a, x)
	upsert(t, idx, b, y)
	if err := idx.Swap(ctxFor(t), a, b); err != nil {
		t.Fatalf("Swap: %v", err)
	}
	wantIDs(t, "a after swap", find(t, idx, a, search.Query{Text: "yodel"}), "y")
	wantIDs(t, "b after swap", find(t, idx, b, search.Query{Text: "xylophone"}), "x")
	wantDocuments(t, idx, a, y)
	wantDocuments(t, idx, b, x)
	// Both keep working as indexes: writes and the version guard follow the swap.
	upsert(t, idx, a, doc("y", "Yodel Time Again", 2, at(0, 0)), doc("x", "Stale", 0, at(0, 0)))
	wantDocuments(t, idx, a, doc("x", "Stale", 0, at(0, 0)), doc("y", "Yodel Time Again", 2, at(0, 0)))
	// Swapping back restores the original pairing.
	if err := idx.Swap(ctxFor(t), a, b); err != nil {
		t.Fatalf("Swap back: %v", err)
	}
	wantDocuments(t, idx, b, doc("x", "Stale", 0, at(0, 0)), doc("y", "Yodel Time Again", 2, at(0, 0)))

	missing := fmt.Sprintf("%s_missing", a)
	if err := idx.Swap(ctxFor(t), a, missing); !errors.Is(err, search.ErrIndexNotFound) {
		t.Fatalf("Swap with a missing index: %v, want ErrIndexNotFound", err)
	}
	wantDocuments(t, idx, a, x) // a failed swap changes nothing
}

func testInvalidNames(t *testing.T, idx Index, _ string) {
	for _, name := range []string{"", "Programs", "programs-v1", "1programs", "x; DROP TABLE y", strings.Repeat("a", 41)} {
		if err := idx.EnsureIndex(ctxFor(t), name); !errors.Is(err, search.ErrInvalidIndexName) {
			t.Errorf("EnsureIndex(%q): %v, want ErrInvalidIndexName", name, err)
		}
		if _, err := idx.Search(ctxFor(t), name, search.Query{Text: "x"}); !errors.Is(err, search.ErrInvalidIndexName) {
			t.Errorf("Search(%q): %v, want ErrInvalidIndexName", name, err)
		}
	}
}
