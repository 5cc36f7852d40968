package feed_test

import (
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/command/feed"
)

// TestControlCharactersFailTheItem: a control character that JSON or CSV can carry
// (an escaped U+0000 above all, which PostgreSQL cannot store) fails its item as the
// aggregate would, before the item is queued; line breaks in descriptions pass.
func TestControlCharactersFailTheItem(t *testing.T) {
	t.Parallel()
	header := "program_external_id,program_title,program_description,category,language,tags,program_published,episode_external_id,episode_title,number,season,episode_description,duration_seconds,episode_published\n"
	tests := []struct {
		name, contentType, body string
		wants                   []want
	}{
		{"NDJSON: escaped NUL in a title", "application/x-ndjson",
			`{"external_id":"p1","title":"A\u0000B","category":"news","language":"en"}` + "\n" +
				`{"external_id":"p2","title":"Ok","category":"news","language":"en"}` + "\n",
			[]want{{1, "p1", "title: must not contain control characters"}, {2, "p2", ""}}},
		{"NDJSON: escaped NUL in a description", "application/x-ndjson",
			`{"external_id":"p1","title":"A","description":"x\u0000","category":"news","language":"en"}` + "\n",
			[]want{{1, "p1", "description: must not contain control characters"}}},
		{"NDJSON: escaped BEL in an episode title", "application/x-ndjson",
			`{"external_id":"p1","title":"A","category":"news","language":"en","episodes":[{"external_id":"e1","title":"\u0007","number":1,"duration_seconds":60}]}` + "\n",
			[]want{{1, "p1", "title: must not contain control characters"}}},
		{"NDJSON: escaped NUL in an external id", "application/x-ndjson",
			`{"external_id":"p\u00001","title":"A","category":"news","language":"en"}` + "\n",
			[]want{{1, "p\x001", "external_id: must contain only printable characters"}}},
		{"NDJSON: line breaks in a description pass", "application/x-ndjson",
			`{"external_id":"p1","title":"A","description":"one\r\ntwo\tthree","category":"news","language":"en"}` + "\n",
			[]want{{1, "p1", ""}}},
		{"JSON array: DEL in a title", "application/json",
			`[{"external_id":"p1","title":"A\u007f","category":"news","language":"en"}]`,
			[]want{{1, "p1", "title: must not contain control characters"}}},
		{"CSV: raw NUL in an episode description", "text/csv",
			header + "p1,Show,,news,en,,,e1,One,1,,a\x00b,60,\n",
			[]want{{2, "p1", "description: must not contain control characters"}}},
		{"CSV: quoted line break in a title", "text/csv",
			header + "p1,\"Two\nlines\",,news,en,,,,,,,,,\n",
			[]want{{2, "p1", "title: must not contain control characters"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			items, err := read(t, tc.contentType, strings.NewReader(tc.body), feed.Limits{})
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			check(t, items, tc.wants)
		})
	}
}
