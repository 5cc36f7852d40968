package search_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/projections/search"
)

func TestIndexNames(t *testing.T) {
	t.Parallel()
	if got := search.IndexName(1); got != "programs_v1" {
		t.Errorf("IndexName(1) = %q", got)
	}
	for name, ok := range map[string]bool{
		"programs_v1": true, "st_0af3": true, "a": true, strings.Repeat("a", 40): true,
		"": false, "Programs": false, "programs-v1": false, "_x": false, "1x": false,
		"x y": false, "x;drop": false, strings.Repeat("a", 41): false,
	} {
		err := search.ValidateIndexName(name)
		if ok != (err == nil) || (err != nil && !errors.Is(err, search.ErrInvalidIndexName)) {
			t.Errorf("ValidateIndexName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestQueryNormalized(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", search.MaxTextRunes+5)
	tests := []struct {
		in, want   search.Query
		wantOffset int
	}{
		{search.Query{}, search.Query{Page: 1, Limit: search.DefaultLimit}, 0},
		{search.Query{Page: -3, Limit: -1}, search.Query{Page: 1, Limit: search.DefaultLimit}, 0},
		{search.Query{Page: 3, Limit: 7}, search.Query{Page: 3, Limit: 7}, 14},
		{search.Query{Page: 2, Limit: 5000}, search.Query{Page: 2, Limit: search.MaxLimit}, search.MaxLimit},
		{search.Query{Text: long}, search.Query{Text: long[:2*search.MaxTextRunes], Page: 1, Limit: search.DefaultLimit}, 0},
	}
	for _, tc := range tests {
		got := tc.in.Normalized()
		if !reflect.DeepEqual(got, tc.want) || got.Offset() != tc.wantOffset {
			t.Errorf("%+v.Normalized() = %+v offset %d, want %+v offset %d", tc.in, got, got.Offset(), tc.want, tc.wantOffset)
		}
	}
}

func TestDedupe(t *testing.T) {
	t.Parallel()
	docs := search.DedupeDocs([]search.Document{
		{ID: "a", Version: 2, Title: "a2"}, {ID: "b", Version: 1}, {ID: "a", Version: 5, Title: "a5"},
		{ID: "a", Version: 3, Title: "a3"}, {ID: "b", Version: 1, Title: "b-last"},
	})
	want := []search.Document{{ID: "a", Version: 5, Title: "a5"}, {ID: "b", Version: 1, Title: "b-last"}}
	if !reflect.DeepEqual(docs, want) {
		t.Errorf("DedupeDocs = %+v, want %+v", docs, want)
	}
	ts := search.DedupeTombstones([]search.Tombstone{{ID: "a", Version: 4}, {ID: "a", Version: 9}, {ID: "b", Version: 1}, {ID: "a", Version: 2}})
	if want := []search.Tombstone{{ID: "a", Version: 9}, {ID: "b", Version: 1}}; !reflect.DeepEqual(ts, want) {
		t.Errorf("DedupeTombstones = %+v, want %+v", ts, want)
	}
}
