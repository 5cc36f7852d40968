// Package pgarray helps the projections write set-wise: a batch's rows go to
// PostgreSQL as one array per column, unnested by the statement, which the server
// reads several times faster than the same rows as JSON (json_to_recordset spent
// about half of an upsert's time parsing). A column whose values are themselves
// arrays (tags) travels as one array literal per row, cast back by the statement.
package pgarray

import "strings"

// TextLiteral returns the PostgreSQL array literal of ss, every element quoted
// ({"a","b \"c\""}), so any text round-trips through a ::text[] cast; nil and
// empty give {}.
func TextLiteral(ss []string) string {
	if len(ss) == 0 {
		return "{}"
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
