package feed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// The JSON names of an item's and an episode's fields; any other name is an error
// (API.md: unknown fields are rejected). Matching is exact, unlike encoding/json's
// case-insensitive default.
var (
	programFields = map[string]bool{"external_id": true, "title": true, "description": true, "category": true, "language": true, "tags": true, "published": true, "episodes": true}
	episodeFields = map[string]bool{"external_id": true, "title": true, "number": true, "season": true, "description": true, "duration_seconds": true, "published": true}
)

var null = []byte("null")

// parseJSONItem decodes one item from its JSON text (an NDJSON line or an array
// element). It returns the program, its external id as far as it could be read, and
// the problem that makes the item invalid ("" when it decoded; the field rules are
// checked afterwards by validate).
func parseJSONItem(raw []byte) (Program, string, string) {
	var p Program
	if !utf8.Valid(raw) {
		return p, externalIDHint(raw), "invalid UTF-8"
	}
	fields, problem := object(raw)
	if problem != "" {
		return p, "", problem
	}
	var problems []string
	get := func(name string, dst any, required bool) {
		if problem := field(fields, name, dst, required); problem != "" {
			problems = append(problems, problem)
		}
	}
	get("external_id", &p.ExternalID, true)
	get("title", &p.Title, true)
	get("description", &p.Description, false)
	get("category", &p.Category, true)
	get("language", &p.Language, true)
	get("tags", &p.Tags, false)
	get("published", &p.Published, false)
	var eps []json.RawMessage
	get("episodes", &eps, false)
	for i, raw := range eps {
		e, problem := parseJSONEpisode(raw)
		if problem != "" {
			problems = append(problems, fmt.Sprintf("%s: %s", episodeRef(i, e), problem))
		}
		p.Episodes = append(p.Episodes, e)
	}
	problems = append(problems, unknown(fields, programFields, "")...)
	return p, p.ExternalID, strings.Join(problems, "; ")
}

func parseJSONEpisode(raw []byte) (Episode, string) {
	var e Episode
	fields, problem := object(raw)
	if problem != "" {
		return e, problem
	}
	var problems []string
	get := func(name string, dst any, required bool) {
		if problem := field(fields, name, dst, required); problem != "" {
			problems = append(problems, problem)
		}
	}
	get("external_id", &e.ExternalID, true)
	get("title", &e.Title, true)
	get("number", &e.Number, true)
	get("season", &e.Season, false)
	get("description", &e.Description, false)
	get("duration_seconds", &e.DurationSeconds, true)
	get("published", &e.Published, false)
	problems = append(problems, unknown(fields, episodeFields, "")...)
	return e, strings.Join(problems, "; ")
}

// field decodes fields[name] into dst and says what is wrong with it, or "": a
// missing or null field is a problem only when required.
func field(fields map[string]json.RawMessage, name string, dst any, required bool) string {
	v, ok := fields[name]
	if !ok || bytes.Equal(v, null) {
		if required {
			return name + ": is required"
		}
		return ""
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return name + ": " + typeProblem(err)
	}
	return ""
}

// object decodes a JSON object into its raw fields, or says why it is not one.
func object(raw []byte) (map[string]json.RawMessage, string) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, "must be a JSON object, got " + te.Value
		}
		return nil, "invalid JSON: " + err.Error()
	}
	if fields == nil {
		return nil, "must be a JSON object, got null"
	}
	return fields, ""
}

func unknown(fields map[string]json.RawMessage, known map[string]bool, prefix string) []string {
	var out []string
	for name := range fields {
		if !known[name] {
			out = append(out, fmt.Sprintf("%s%q: unknown field", prefix, truncate(strings.ToValidUTF8(name, "\uFFFD"), 100)))
		}
	}
	sort.Strings(out)
	return out
}

// typeProblem turns a JSON type error into a short message.
func typeProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := te.Type.String()
		switch {
		case strings.Contains(want, "int"):
			want = "an integer"
		case strings.Contains(want, "bool"):
			want = "true or false"
		case strings.Contains(want, "[]string"):
			want = "an array of strings"
		case strings.Contains(want, "string"):
			want = "a string"
		case strings.Contains(want, "[]"):
			want = "an array"
		}
		return fmt.Sprintf("must be %s, got %s", want, te.Value)
	}
	return err.Error()
}

// externalIDHint finds an item's external id in text that is not valid UTF-8, for
// the error report only: the first "external_id" string value, if it is plain.
func externalIDHint(raw []byte) string {
	i := bytes.Index(raw, []byte(`"external_id"`))
	if i < 0 {
		return ""
	}
	rest := bytes.TrimLeft(raw[i+len(`"external_id"`):], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return ""
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return ""
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 || end > 4*maxExternalIDRunes {
		return ""
	}
	v := rest[1 : 1+end]
	if bytes.IndexByte(v, '\\') >= 0 {
		return ""
	}
	return strings.ToValidUTF8(string(v), "\uFFFD")
}
