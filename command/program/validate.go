package program

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"
)

// Limits of the catalog's fields (API.md). Lengths count characters (runes), not bytes.
const (
	MaxTitleLen       = 200
	MaxDescriptionLen = 5000
	MaxExternalIDLen  = 200
	MaxSlugLen        = 64
	MaxTags           = 20
	MaxDuration       = 86400
)

var slugRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// fieldErrors collects invalid fields in the order they are checked.
type fieldErrors []FieldError

func (fe *fieldErrors) add(field, format string, args ...any) {
	*fe = append(*fe, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// err returns nil or a *ValidationError listing every collected field.
func (fe fieldErrors) err() error {
	if len(fe) == 0 {
		return nil
	}
	return &ValidationError{Fields: fe}
}

// normTitle trims the title and checks it: 1–200 characters after trimming. The
// trimmed form is what is stored, so "  A " and "A" are the same title.
func normTitle(fe *fieldErrors, s string) string {
	if !utf8.ValidString(s) {
		fe.add("title", "must be valid UTF-8")
		return s
	}
	t := strings.TrimSpace(s)
	switch n := utf8.RuneCountInString(t); {
	case n == 0:
		fe.add("title", "must not be empty")
	case n > MaxTitleLen:
		fe.add("title", "must be at most %d characters, got %d", MaxTitleLen, n)
	case strings.IndexFunc(t, isControl) >= 0:
		fe.add("title", "must not contain control characters (U+0000–U+001F, U+007F)")
	}
	return t
}

// isControl reports the C0 controls and DEL. They are refused in every one-line
// field (titles; external ids, tags and slugs refuse them through their own
// rules), because an event is forever: U+0000 cannot be stored in PostgreSQL text
// or jsonb at all, so one such event would fail every projection that reads it on
// every replay (a poison event), and the other controls break the CSV, terminal
// and HTML outputs built from the catalog.
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// isDescriptionControl is isControl without the layout characters a multi-line
// text needs: tab, line feed and carriage return stay allowed in descriptions.
func isDescriptionControl(r rune) bool {
	return r < 0x20 && r != '\t' && r != '\n' && r != '\r'
}

// checkDescription allows an empty description; it is stored as given, so it may
// hold tabs and line breaks but no other control character (see isControl).
func checkDescription(fe *fieldErrors, s string) {
	if !utf8.ValidString(s) {
		fe.add("description", "must be valid UTF-8")
		return
	}
	if n := utf8.RuneCountInString(s); n > MaxDescriptionLen {
		fe.add("description", "must be at most %d characters, got %d", MaxDescriptionLen, n)
		return
	}
	if strings.IndexFunc(s, isDescriptionControl) >= 0 {
		fe.add("description", "must not contain control characters other than tab, line feed and carriage return")
	}
}

// checkExternalID allows an empty id (none); otherwise up to 200 printable characters
// (unicode.IsPrint: no control character of C0, DEL or C1, no U+0000).
// It is a key of ingest feeds, so it is stored exactly as given.
func checkExternalID(fe *fieldErrors, s string) {
	if !utf8.ValidString(s) {
		fe.add("external_id", "must be valid UTF-8")
		return
	}
	if n := utf8.RuneCountInString(s); n > MaxExternalIDLen {
		fe.add("external_id", "must be at most %d characters, got %d", MaxExternalIDLen, n)
		return
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			fe.add("external_id", "must contain only printable characters")
			return
		}
	}
}

// checkSlug reports whether s is a lowercase slug of at most 64 characters.
func slugProblem(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > MaxSlugLen:
		return fmt.Sprintf("must be at most %d characters", MaxSlugLen)
	case !slugRE.MatchString(s):
		return "must be a lowercase slug (a-z, 0-9, single hyphens between words)"
	}
	return ""
}

func checkCategory(fe *fieldErrors, s string) {
	if p := slugProblem(s); p != "" {
		fe.add("category", "%s", p)
	}
}

// normLanguage parses a BCP 47 tag and returns its canonical form ("EN-us" -> "en-US"),
// so equal languages compare equal. Anything that does not parse is rejected.
func normLanguage(fe *fieldErrors, s string) string {
	if strings.TrimSpace(s) == "" {
		fe.add("language", "must not be empty")
		return s
	}
	tag, err := language.Parse(s)
	if err != nil {
		fe.add("language", "must be a BCP 47 language tag (e.g. en, en-US, pt-BR)")
		return s
	}
	return tag.String()
}

// normTags checks every tag, removes duplicates (the first occurrence keeps its place)
// and returns a non-nil list. The limit of 20 counts distinct tags.
func normTags(fe *fieldErrors, tags []string) []string {
	out := make([]string, 0, len(tags))
	seen := make(map[string]bool, len(tags))
	bad := false
	for i, t := range tags {
		if p := slugProblem(t); p != "" {
			if !bad {
				fe.add("tags", "tag %d (%q) %s", i+1, t, p)
			}
			bad = true
			continue
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) > MaxTags {
		fe.add("tags", "must have at most %d distinct tags, got %d", MaxTags, len(out))
	}
	return out
}

// normSeason applies the default season 1 to 0 when allowZero is set (a new episode
// without a season); otherwise a season must be at least 1.
func normSeason(fe *fieldErrors, season int, allowZero bool) int {
	if season == 0 && allowZero {
		return 1
	}
	if season < 1 {
		fe.add("season", "must be at least 1")
	}
	return season
}

func checkNumber(fe *fieldErrors, n int) {
	if n < 1 {
		fe.add("number", "must be at least 1")
	}
}

func checkDuration(fe *fieldErrors, d int) {
	if d < 1 || d > MaxDuration {
		fe.add("duration_seconds", "must be between 1 and %d", MaxDuration)
	}
}
