package postgres

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text string
		want parsedText
	}{
		{"", parsedText{}},
		{"  !!! -- ", parsedText{}},
		{"Nordic", parsedText{tsq: "'Nordic':*", exact: "'Nordic'", typoWords: []string{"Nordic"}, typoText: "Nordic"}},
		{"nordik noir", parsedText{tsq: "'nordik' & 'noir':*", exact: "'nordik' & 'noir'", typoWords: []string{"nordik", "noir"}, typoText: "nordik noir"}},
		// A short last word after others is a fragment, checked as a filter.
		{"nordic n", parsedText{tsq: "'nordic'", fragment: "'n':*", typoWords: []string{"nordic"}, typoText: "nordic n"}},
		// A short word alone must match a whole word; no typo test below four letters.
		{"ab", parsedText{tsq: "'ab'"}},
		{"the", parsedText{tsq: "'the':*", exact: "'the'"}},
		// Quotes, operators and backslashes separate words: nothing reaches the tsquery syntax.
		{`o'brien & x|y:*!(z)\`, parsedText{tsq: "'o' & 'brien' & 'x' & 'y'", fragment: "'z':*", typoWords: []string{"brien"}, typoText: "o brien x y z"}},
		// Letters of any script, digits and combining marks are word characters.
		{"Café 2049 noir", parsedText{tsq: "'Café' & '2049' & 'noir':*", exact: "'Café' & '2049' & 'noir'", typoWords: []string{"Café", "2049", "noir"}, typoText: "Café 2049 noir"}},
		{"cafe\u0301", parsedText{tsq: "'cafe\u0301':*", exact: "'cafe\u0301'", typoWords: []string{"cafe\u0301"}, typoText: "cafe\u0301"}},
	}
	for _, tc := range tests {
		if got := parseText(tc.text); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseText(%q) = %+v, want %+v", tc.text, got, tc.want)
		}
	}
	// Words beyond maxWords are dropped.
	long := parseText(strings.Repeat("word ", 40))
	if n := strings.Count(long.tsq, "&") + 1; n != maxWords {
		t.Errorf("%d words in the tsquery, want %d", n, maxWords)
	}
}
