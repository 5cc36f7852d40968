package feed_test

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/command/feed"
)

// read returns every item of a feed and the error that ended it (nil at io.EOF).
func read(t *testing.T, contentType string, body io.Reader, lim feed.Limits) ([]feed.Item, error) {
	t.Helper()
	p, err := feed.NewParser(contentType, body, lim)
	if err != nil {
		return nil, err
	}
	var items []feed.Item
	for {
		it, err := p.Next()
		if errors.Is(err, io.EOF) {
			return items, nil
		}
		if err != nil {
			if _, again := p.Next(); again == nil {
				t.Fatal("Next succeeded after an error")
			}
			return items, err
		}
		if it.Index != len(items) {
			t.Fatalf("item index %d, want %d", it.Index, len(items))
		}
		items = append(items, it)
	}
}

// want is an expected item: its line, external id, and a fragment of its problem
// ("" for a valid item).
type want struct {
	line    int64
	ext     string
	problem string
}

func check(t *testing.T, items []feed.Item, wants []want) {
	t.Helper()
	if len(items) != len(wants) {
		for _, it := range items {
			t.Logf("item %+v", it)
		}
		t.Fatalf("%d items, want %d", len(items), len(wants))
	}
	for i, w := range wants {
		it := items[i]
		if it.Line != w.line || it.ExternalID != w.ext {
			t.Errorf("item %d: line %d external id %q, want line %d %q", i, it.Line, it.ExternalID, w.line, w.ext)
		}
		switch {
		case w.problem == "" && it.Problem != "":
			t.Errorf("item %d (line %d): unexpected problem %q", i, it.Line, it.Problem)
		case w.problem != "" && !strings.Contains(it.Problem, w.problem):
			t.Errorf("item %d (line %d): problem %q, want it to contain %q", i, it.Line, it.Problem, w.problem)
		}
	}
}

const okItem = `{"external_id":"p1","title":"Show","category":"news","language":"en"}`

func TestKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"application/x-ndjson", feed.ContentTypeNDJSON, true},
		{"application/x-ndjson; charset=utf-8", feed.ContentTypeNDJSON, true},
		{"Application/JSON", feed.ContentTypeJSON, true},
		{"text/csv; header=present", feed.ContentTypeCSV, true},
		{"text/csv; charset=latin1", "", false},
		{"text/plain", "", false},
		{"", "", false},
		{"application/json; charset=", "", false},
		{"multipart/form-data; boundary=x", "", false},
	}
	for _, tc := range tests {
		got, err := feed.Kind(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("Kind(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if !tc.ok && !errors.Is(err, feed.ErrUnsupportedContentType) {
			t.Errorf("Kind(%q) err = %v, want ErrUnsupportedContentType", tc.in, err)
		}
	}
}

func TestNDJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		body  string
		wants []want
	}{
		{"valid, blank lines and CRLF count as lines", okItem + "\r\n\n  \n" + strings.Replace(okItem, "p1", "p2", 1), []want{{1, "p1", ""}, {4, "p2", ""}}},
		{"no final newline", okItem, []want{{1, "p1", ""}}},
		{"BOM", "\xEF\xBB\xBF" + okItem + "\n", []want{{1, "p1", ""}}},
		{"required fields", `{"external_id":"x"}`, []want{{1, "x", "title: is required"}}},
		{"field rules", `{"external_id":"x","title":"  ","category":"News","language":"??","tags":["a","a","B"]}`, []want{{1, "x", "title: must not be empty; category: must be a lowercase slug"}}},
		{"unknown and wrong-case fields", `{"external_id":"x","title":"T","category":"c","language":"en","Title":"T","x":1}`, []want{{1, "x", `"Title": unknown field; "x": unknown field`}}},
		{"wrong types", `{"external_id":"x","title":5,"category":"c","language":"en","published":"yes"}`, []want{{1, "x", "title: must be a string, got number; published: must be true or false, got string"}}},
		{"null optional fields are absent", `{"external_id":"x","title":"T","category":"c","language":"en","description":null,"tags":null,"episodes":null}`, []want{{1, "x", ""}}},
		{"not an object", "[1,2]\n5\nnull", []want{{1, "", "must be a JSON object, got array"}, {2, "", "must be a JSON object, got number"}, {3, "", "got null"}}},
		{"malformed JSON", `{"external_id":"x",` + "\n" + `{"a":1}{"b":2}`, []want{{1, "", "invalid JSON"}, {2, "", "invalid JSON"}}},
		{"invalid UTF-8 keeps the external id for the report", `{"external_id":"x1","title":"` + "\xff" + `","category":"c","language":"en"}`, []want{{1, "x1", "invalid UTF-8"}}},
		{"episodes", `{"external_id":"x","title":"T","category":"c","language":"en","episodes":[` +
			`{"external_id":"e1","title":"E","number":1,"duration_seconds":60},` +
			`{"external_id":"e1","title":"E","number":1,"season":0,"duration_seconds":0},` +
			`{"title":"E","number":2.5,"duration_seconds":60,"rating":1}]}`,
			[]want{{1, "x", `episodes[2] (external_id ""): external_id: is required; number: must be an integer, got number 2.5; "rating": unknown field`}}},
		{"episode rules", `{"external_id":"x","title":"T","category":"c","language":"en","episodes":[` +
			`{"external_id":"e1","title":"E","number":1,"duration_seconds":60},` +
			`{"external_id":"e1","title":"E","number":1,"season":0,"duration_seconds":0}]}`,
			[]want{{1, "x", `episodes[1] (external_id "e1"): external_id: the item already has it`}}},
		{"season/number twice", `{"external_id":"x","title":"T","category":"c","language":"en","episodes":[` +
			`{"external_id":"e1","title":"E","number":1,"duration_seconds":60},` +
			`{"external_id":"e2","title":"E","number":1,"season":1,"duration_seconds":60}]}`,
			[]want{{1, "x", "season 1 already has number 1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			items, err := read(t, "application/x-ndjson", strings.NewReader(tc.body), feed.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			check(t, items, tc.wants)
		})
	}
}

func TestNDJSONEpisodeSeasonZero(t *testing.T) {
	t.Parallel()
	body := `{"external_id":"x","title":"T","category":"c","language":"en","episodes":[{"external_id":"e1","title":"E","number":1,"season":0,"duration_seconds":60}]}`
	items, err := read(t, "application/x-ndjson", strings.NewReader(body), feed.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	check(t, items, []want{{1, "x", "season: must be at least 1"}})
}

func TestNDJSONLongLinesAreSkipped(t *testing.T) {
	t.Parallel()
	long := `{"external_id":"long","title":"` + strings.Repeat("a", 300) + `","category":"c","language":"en"}`
	body := okItem + "\n" + long + "\n" + strings.Replace(okItem, "p1", "p3", 1)
	items, err := read(t, "application/x-ndjson", strings.NewReader(body), feed.Limits{MaxLineBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	check(t, items, []want{{1, "p1", ""}, {2, "", "line is longer than 100 bytes"}, {3, "p3", ""}})
}

func TestJSONArray(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		wants   []want
		feedErr string // a fragment of the *FeedError that ends it
		invalid bool   // NewParser refuses it with ErrInvalidFeed
	}{
		{"valid", "[" + okItem + ",\n" + strings.Replace(okItem, "p1", "p2", 1) + "]", []want{{1, "p1", ""}, {2, "p2", ""}}, "", false},
		{"empty array", " [ ] ", nil, "", false},
		{"elements that are not programs", `[1, "x", null, []]`, []want{{1, "", "got number"}, {2, "", "got string"}, {3, "", "got null"}, {4, "", "got array"}}, "", false},
		{"never closes", "[" + okItem + ", " + okItem, []want{{1, "p1", ""}, {2, "p1", ""}}, "not closed", false},
		{"ends inside an element", "[" + okItem + `, {"external_id":"p2"`, []want{{1, "p1", ""}}, "not closed", false},
		{"missing comma", "[" + okItem + " " + okItem + "]", []want{{1, "p1", ""}}, "invalid JSON in element 2", false},
		{"trailing data", "[" + okItem + "] []", []want{{1, "p1", ""}}, "data after the end", false},
		{"invalid UTF-8 in an element", `[{"external_id":"u","title":"` + "\xc3\x28" + `","category":"c","language":"en"},` + okItem + "]", []want{{1, "u", "invalid UTF-8"}, {2, "p1", ""}}, "", false},
		{"an object", "{}", nil, "", true},
		{"empty body", "", nil, "", true},
		{"garbage", "nope", nil, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			items, err := read(t, "application/json", strings.NewReader(tc.body), feed.Limits{})
			if tc.invalid {
				if !errors.Is(err, feed.ErrInvalidFeed) {
					t.Fatalf("err = %v, want ErrInvalidFeed", err)
				}
				return
			}
			var fe *feed.FeedError
			switch {
			case tc.feedErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.feedErr != "" && (!errors.As(err, &fe) || !strings.Contains(fe.Message, tc.feedErr)):
				t.Fatalf("err = %v, want a feed error with %q", err, tc.feedErr)
			}
			check(t, items, tc.wants)
		})
	}
}

func TestJSONArrayElementSize(t *testing.T) {
	t.Parallel()
	big := `{"external_id":"big","title":"` + strings.Repeat("a", 150) + `"}`
	// Larger than the limit but within the decoder's allowance: the element fails
	// alone and the feed goes on.
	items, err := read(t, "application/json", strings.NewReader("["+big+","+okItem+"]"), feed.Limits{MaxLineBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	check(t, items, []want{{1, "big", "element is larger than 100 bytes"}, {2, "p1", ""}})
}

func TestCSV(t *testing.T) {
	t.Parallel()
	header := strings.Join(feed.CSVColumns, ",") + "\n"
	tests := []struct {
		name    string
		body    string
		wants   []want
		feedErr string
		invalid string // NewParser refuses it with ErrInvalidFeed mentioning this
	}{
		{"grouped rows", header +
			"p1,Show,Desc,news,en,a|b,true,e1,One,1,1,,60,true\n" +
			"p1,Show,Desc,news,en,a|b,true,e2,Two,2,,About,60,\n" +
			"p2,Other,,news,fr,,,,,,,,,\n", []want{{2, "p1", ""}, {4, "p2", ""}}, "", ""},
		{"header in another order with spaces and a BOM", "\xEF\xBB\xBF" + strings.Join(reverse(feed.CSVColumns), " , ") + "\n" +
			",60,,1,1,One,e1,,,en,news,,Show,p1\n", []want{{2, "p1", ""}}, "", ""},
		{"quoted newline keeps the first row's line", header +
			"p1,Show,\"Multi\nline\",news,en,,,e1,One,1,,,60,\n" +
			"p1,Show,\"Multi\nline\",news,en,,,e2,Two,2,,,60,\n" +
			"p2,T,,news,en,,,,,,,,,\n", []want{{2, "p1", ""}, {6, "p2", ""}}, "", ""},
		{"program columns must agree", header +
			"p1,Show,,news,en,,,e1,One,1,,,60,\n" +
			"p1,Show,,drama,en,,,e2,Two,2,,,60,\n", []want{{2, "p1", "line 3: category differs from the program's first row (line 2)"}}, "", ""},
		{"bad cells", header +
			"p1,Show,,news,en,,maybe,e1,One,x,-1,,,\n", []want{{2, "p1", "program_published: must be true or false"}}, "", ""},
		{"bad episode cells", header +
			"p1,Show,,news,en,,,e1,One,x,,,,\n", []want{{2, "p1", `episode at line 2 (external_id "e1"): number: must be an integer; duration_seconds: is required`}}, "", ""},
		{"episode cells without an episode id", header +
			"p1,Show,,news,en,,,,One,1,,,60,\n", []want{{2, "p1", "episode_title is set but episode_external_id is empty"}}, "", ""},
		{"wrong field count", header +
			"p1,Show,,news,en,,,e1,One,1,,,60,\n" +
			"p1,Show\n" +
			"p2\n", []want{{2, "p1", "line 3 has 2 fields, the header 14"}, {4, "p2", "line 4 has 1 fields"}}, "", ""},
		{"invalid UTF-8", header + "p1,Sh\xffow,,news,en,,,,,,,,,\n", []want{{2, "p1", "line 2: invalid UTF-8"}}, "", ""},
		{"a program id that comes back is a new item", header +
			"p1,Show,,news,en,,,,,,,,,\np2,Show,,news,en,,,,,,,,,\np1,Show,,news,en,,,,,,,,,\n", []want{{2, "p1", ""}, {3, "p2", ""}, {4, "p1", ""}}, "", ""},
		{"syntax error stops the feed", header +
			"p1,Show,,news,en,,,,,,,,,\n" +
			"p2,Sh\"ow,,news,en,,,,,,,,,\n", []want{{2, "p1", "the feed broke off"}}, "invalid CSV", ""},
		{"missing column", "program_external_id,program_title,category,language\n", nil, "", `column "program_description" is missing`},
		{"unknown column", strings.TrimSuffix(header, "\n") + ",rating\n", nil, "", `unknown column "rating"`},
		{"repeated column", strings.TrimSuffix(header, "\n") + ",tags\n", nil, "", `column "tags" appears twice`},
		{"empty body", "", nil, "", "empty body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			items, err := read(t, "text/csv", strings.NewReader(tc.body), feed.Limits{})
			if tc.invalid != "" {
				if !errors.Is(err, feed.ErrInvalidFeed) || !strings.Contains(err.Error(), tc.invalid) {
					t.Fatalf("err = %v, want ErrInvalidFeed with %q", err, tc.invalid)
				}
				return
			}
			var fe *feed.FeedError
			switch {
			case tc.feedErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.feedErr != "" && (!errors.As(err, &fe) || !strings.Contains(fe.Message, tc.feedErr)):
				t.Fatalf("err = %v, want a feed error with %q", err, tc.feedErr)
			}
			check(t, items, tc.wants)
		})
	}
}

func TestCSVValues(t *testing.T) {
	t.Parallel()
	body := strings.Join(feed.CSVColumns, ",") + "\n" +
		"p1,Show,Desc,news,en,a|b,false,e1,One,1,2,About,60,true\n" +
		"p1,Show,Desc,news,en,a|b,false,e2,Two,2,,,61,\n"
	items, err := read(t, "text/csv", strings.NewReader(body), feed.Limits{})
	if err != nil || len(items) != 1 {
		t.Fatalf("items %v, err %v", items, err)
	}
	p := items[0].Program
	if p.Title != "Show" || *p.Description != "Desc" || strings.Join(*p.Tags, ",") != "a,b" || *p.Published || len(p.Episodes) != 2 {
		t.Fatalf("program %+v", p)
	}
	e1, e2 := p.Episodes[0], p.Episodes[1]
	if *e1.Season != 2 || *e1.Description != "About" || !*e1.Published || e1.DurationSeconds != 60 {
		t.Fatalf("episode 1 %+v", e1)
	}
	if e2.Season != nil || e2.Description != nil || e2.Published != nil || e2.Number != 2 {
		t.Fatalf("episode 2: empty optional cells must be absent: %+v", e2)
	}
}

func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// hugeReader yields prefix, then n bytes of fill, then suffix, without holding
// them: a 1 GB line costs no memory in the test itself.
type hugeReader struct {
	prefix, suffix string
	fill           byte
	n              int64
	block          []byte
}

func (h *hugeReader) Read(p []byte) (int, error) {
	if h.prefix != "" {
		n := copy(p, h.prefix)
		h.prefix = h.prefix[n:]
		return n, nil
	}
	if h.n > 0 {
		if h.block == nil {
			h.block = []byte(strings.Repeat(string(h.fill), 64<<10))
		}
		m := int64(len(p))
		if m > h.n {
			m = h.n
		}
		if m > int64(len(h.block)) {
			m = int64(len(h.block))
		}
		n := copy(p, h.block[:m])
		h.n -= int64(n)
		return n, nil
	}
	if h.suffix != "" {
		n := copy(p, h.suffix)
		h.suffix = h.suffix[n:]
		return n, nil
	}
	return 0, io.EOF
}

// TestHostileHugeLine feeds a 1 GB line (record, element) to each format: the
// NDJSON line fails alone and the next line is read; JSON and CSV stop the feed
// after the items before it. Memory stays bounded: the test fails if reading
// allocated more than 64 MiB in total.
func TestHostileHugeLine(t *testing.T) {
	const gig = 1 << 30
	tests := []struct {
		name, contentType string
		r                 *hugeReader
		wants             []want
		feedErr           string
	}{
		{"ndjson", "application/x-ndjson", &hugeReader{
			prefix: okItem + "\n" + `{"external_id":"huge","title":"`, fill: 'a', n: gig,
			suffix: `","category":"c","language":"en"}` + "\n" + strings.Replace(okItem, "p1", "p2", 1) + "\n"},
			[]want{{1, "p1", ""}, {2, "", "line is longer than 1048576 bytes"}, {3, "p2", ""}}, ""},
		{"json array", "application/json", &hugeReader{
			prefix: "[" + okItem + `, {"external_id":"huge","title":"`, fill: 'a', n: gig, suffix: `"}]`},
			[]want{{1, "p1", ""}}, "element 2 is larger than 1048576 bytes"},
		{"json array whitespace", "application/json", &hugeReader{prefix: "[" + okItem + ",", fill: ' ', n: gig, suffix: okItem + "]"},
			[]want{{1, "p1", ""}}, "larger than 1048576 bytes"},
		{"csv", "text/csv", &hugeReader{
			prefix: strings.Join(feed.CSVColumns, ",") + "\np1,Show,,news,en,,,,,,,,,\np2,", fill: 'a', n: gig, suffix: ",,news,en,,,,,,,,,\n"},
			[]want{{2, "p1", "the feed broke off"}}, "a record is larger than 1048576 bytes"},
		{"csv quoted", "text/csv", &hugeReader{
			prefix: strings.Join(feed.CSVColumns, ",") + "\np1,Show,,news,en,,,,,,,,,\np2,\"", fill: '\n', n: gig, suffix: "\",,news,en,,,,,,,,,\n"},
			[]want{{2, "p1", "the feed broke off"}}, "larger than 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			items, err := read(t, tc.contentType, tc.r, feed.Limits{})
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("reading allocated %d MiB", alloc>>20)
			}
			var fe *feed.FeedError
			switch {
			case tc.feedErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.feedErr != "" && (!errors.As(err, &fe) || !strings.Contains(fe.Message, tc.feedErr)):
				t.Fatalf("err = %v, want a feed error with %q", err, tc.feedErr)
			}
			check(t, items, tc.wants)
		})
	}
}

func TestProblemsAreBounded(t *testing.T) {
	t.Parallel()
	tags := `["` + strings.Repeat("X", 50000) + `"]`
	body := `{"external_id":"x","title":"T","category":"c","language":"en","tags":` + tags + `}`
	items, err := read(t, "application/x-ndjson", strings.NewReader(body), feed.Limits{})
	if err != nil || len(items) != 1 {
		t.Fatal(items, err)
	}
	if n := len(items[0].Problem); n == 0 || n > 1100 {
		t.Fatalf("problem of %d bytes", n)
	}
}
