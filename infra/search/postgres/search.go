package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mediamesh/mediamesh/projections/search"
)

// Limits of the text query's parsing.
const (
	// maxWords bounds the tsquery (and so the number of GIN posting lists read).
	maxWords = 12
	// minTrigramRunes: shorter words skip the trigram (typo) test. Their few
	// trigrams match a large part of any catalog, and pg_trgm cannot tell a typo in
	// a word of three letters from another word (Meilisearch allows no typo below
	// five letters either).
	minTrigramRunes = 4
	// minIndexedPrefixRunes: a shorter last word is not looked up as a prefix in
	// the GIN index, which would merge the posting lists of every word it begins
	// (thousands for "a"). After other words it is a fragment being typed ("nordic
	// n"), checked as a prefix on the rows the other words found; alone it must
	// match a whole word.
	minIndexedPrefixRunes = 3
	// maxCorrections bounds the vocabulary words a typo word is corrected to (the
	// most similar ones): the corrected query reads that many posting lists per word.
	maxCorrections = "8"
)

// parsedText is a query text prepared for SQL. Words are runs of letters, digits
// and combining marks; everything else separates them, so the tsqueries hold
// nothing but quoted words and operators: user input never reaches to_tsquery's
// syntax. Folding (accents, case) happens in SQL with search_norm, exactly as for
// the indexed text.
type parsedText struct {
	// tsq: the words joined with AND, the last one a prefix unless it is short
	// ("" when there is no word), looked up in the GIN indexes.
	tsq string
	// exact: tsq with the last word exact, when tsq ends with a prefix ("" otherwise).
	exact string
	// fragment: a short last word as a prefix tsquery, checked as a filter ("" for none).
	fragment string
	// typoWords must each be within the word-similarity threshold of a title word
	// for a typo match; empty when no word is long enough.
	typoWords []string
	// typoText is the whole text, whose word similarity scores a typo match.
	typoText string
}

func parseText(text string) parsedText {
	words := strings.FieldsFunc(text, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r)
	})
	if len(words) == 0 {
		return parsedText{}
	}
	if len(words) > maxWords {
		words = words[:maxWords]
	}
	var pt parsedText
	indexed := words
	last := words[len(words)-1]
	short := utf8.RuneCountInString(last) < minIndexedPrefixRunes
	if short && len(words) > 1 {
		indexed = words[:len(words)-1]
		pt.fragment = "'" + last + "':*"
	}
	parts := make([]string, len(indexed))
	for i, w := range indexed {
		parts[i] = "'" + w + "'"
	}
	if !short {
		pt.exact = strings.Join(parts, " & ")
		parts[len(parts)-1] += ":*"
	}
	pt.tsq = strings.Join(parts, " & ")
	for _, w := range words {
		if utf8.RuneCountInString(w) >= minTrigramRunes {
			pt.typoWords = append(pt.typoWords, w)
		}
	}
	if len(pt.typoWords) > 0 {
		pt.typoText = strings.Join(words, " ")
	}
	return pt
}

// wordSimilarityThreshold is the pg_trgm word similarity from which a title word
// counts as a (typo-tolerant) match of a word of the text. pg_trgm's default of
// 0.6 misses one missing letter in a word of nine ("gardning"); 0.5 finds it and
// most single typos in words of five letters or more, close to Meilisearch's rule
// of one typo from five letters (two swapped letters, which lose more trigrams,
// are looked up as such: see buildSQL). Each search sets it for its own
// transaction only (setupSQL).
const wordSimilarityThreshold = "0.5"

func emptyResult() search.Result {
	return search.Result{IDs: []string{}, Facets: map[string]map[string]int{
		search.FacetCategory: {}, search.FacetLanguage: {},
	}}
}

func nonNilMap(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

// Documents lists every live document of the index, ordered by id (byte order).
func (x *Index) Documents(ctx context.Context, index string) ([]search.Document, error) {
	n, err := namesOf(index)
	if err != nil {
		return nil, err
	}
	rows, err := x.pool.Query(ctx, `SELECT id, version, title, description, category, language, tags,
		episode_titles, episode_count, published_at FROM `+ident(n.table)+` WHERE NOT deleted ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list search index %s: %w", index, mapErr(err))
	}
	defer rows.Close()
	var out []search.Document
	for rows.Next() {
		var (
			d  search.Document
			pa *time.Time
		)
		if err := rows.Scan(&d.ID, &d.Version, &d.Title, &d.Description, &d.Category, &d.Language,
			&d.Tags, &d.EpisodeTitles, &d.EpisodeCount, &pa); err != nil {
			return nil, fmt.Errorf("list search index %s: %w", index, err)
		}
		if pa != nil {
			d.PublishedAt = pa.UTC()
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list search index %s: %w", index, mapErr(err))
	}
	return out, nil
}
