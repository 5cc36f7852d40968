package api

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeStrict(t *testing.T) {
	t.Parallel()
	type body struct {
		Title *string   `json:"title"`
		N     *int      `json:"n"`
		Tags  *[]string `json:"tags"`
	}
	tests := []struct {
		name   string
		in     string
		ok     bool
		fields []string // fields the 400 must name
	}{
		{"empty object", `{}`, true, nil},
		{"all fields", `{"title":"a","n":3,"tags":["x"]}`, true, nil},
		{"whitespace around", " \n{\"title\":\"a\"}\t\n", true, nil},
		{"brackets inside strings do not nest", `{"title":"` + strings.Repeat("[{", 100) + `"}`, true, nil},
		{"escaped quote in string", `{"title":"a\"[[[[b"}`, true, nil},
		{"depth 32 is fine", `{"tags":` + strings.Repeat("[", 31) + strings.Repeat("]", 31) + `}`, false, []string{"tags"}},
		{"depth 33 is not", `{"tags":` + strings.Repeat("[", 32) + strings.Repeat("]", 32) + `}`, false, nil},
		{"every bad field at once", `{"title":1,"n":"x","extra":0,"tags":null}`, false, []string{"title", "n", "extra", "tags"}},
		{"long unknown name is cut", `{"` + strings.Repeat("k", 500) + `":1}`, false, []string{strings.Repeat("k", maxEchoedName) + "…"}},
		{"many unknown fields", "{" + strings.Repeat(`"x":1,`, 1000) + `"y":1}`, false, []string{"x"}},
		{"array top level", `[]`, false, nil},
		{"number top level", `1`, false, nil},
		{"trailing comma", `{"title":"a",}`, false, nil},
		{"trailing garbage", `{} x`, false, nil},
		{"second value", `{} {}`, false, nil},
		{"invalid utf-8 in a key", "{\"\xc3\x28\":1}", false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b body
			err := decodeStrict([]byte(tc.in), &b)
			if tc.ok {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			var he *httpError
			if !errors.As(err, &he) || he.status != 400 {
				t.Fatalf("err = %v, want a 400", err)
			}
			if len(he.fields) > maxFieldErrors {
				t.Errorf("%d field errors, want at most %d", len(he.fields), maxFieldErrors)
			}
			for _, f := range tc.fields {
				found := false
				for _, fe := range he.fields {
					found = found || fe.Field == f
				}
				if !found {
					t.Errorf("400 does not name %q: %+v", f, he.fields)
				}
			}
		})
	}
}

func TestParseIfMatch(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{`"3"`: 3, `3`: 3, ` "0" `: 0, `"123456789012345678"`: 123456789012345678} {
		if v, ok := parseIfMatch([][]byte{[]byte(in)}); !ok || v != want {
			t.Errorf("%q = %d, %v", in, v, ok)
		}
	}
	for _, in := range []string{``, `""`, `"`, `W/"3"`, `*`, `"3", "4"`, `"-1"`, `+3`, `"3.0"`, `"1234567890123456789"`, `'3'`} {
		if v, ok := parseIfMatch([][]byte{[]byte(in)}); ok {
			t.Errorf("%q accepted as %d", in, v)
		}
	}
	if _, ok := parseIfMatch([][]byte{[]byte(`"1"`), []byte(`"1"`)}); ok {
		t.Error("two If-Match headers accepted")
	}
}

func TestNoneMatchAndPatterns(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]bool{`"3"`: true, `W/"3"`: true, `"1", W/"3"`: true, `*`: true, `"4"`: false, ``: false, `3`: false} {
		if got := noneMatch(h, `"3"`); got != want {
			t.Errorf("noneMatch(%q) = %v", h, got)
		}
	}
	for _, tc := range []struct {
		pattern, path string
		want          bool
	}{
		{"/v1/programs/:id", "/v1/programs/abc", true},
		{"/v1/programs/:id", "/v1/programs/", false},
		{"/v1/programs/:id", "/v1/programs/abc/publish", false},
		{"/v1/programs", "/v1/programs", true},
	} {
		if got := matchPattern(tc.pattern, tc.path); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v", tc.pattern, tc.path, got)
		}
	}
}
