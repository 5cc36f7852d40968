package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/projections/search"
)

// Candidate sources. A text query is answered from at most search.MaxHits
// candidates per source, so its cost is bounded whatever the text matches:
//
//   - fa: documents whose full tsvector matches (every word, the last as a prefix:
//     exact matches first, prefix-only ones while the cap is not reached);
//   - ft: only when fa is saturated (a broad word), further documents whose title
//     matches, so the best tier of a broad query is complete although fa is a sample;
//   - tg: only when fa does not fill the requested page (offset + limit rows; so fa
//     holds every full-text match), titles that did not match in full text but
//     hold, for each word of four letters or more, one of its corrections (typos):
//     the maxCorrections words of the index's vocabulary (tq) most similar to it
//     among those within the word-similarity threshold, found through the
//     vocabulary's trigram index, and the vocabulary words that differ from it by
//     two swapped adjacent letters; the titles come from the title GIN index.
//
// The sources are disjoint, so they are concatenated without deduplication, and each
// scores its rows once: a full-text match scores 10 + 10 × ts_rank (weights D 0.1,
// C 0.2, B 0.4, A 1.0: title above tags above episode titles above description), a
// typo match the word similarity of the text to its title (0 to 1). Exact matches
// therefore rank above typo matches, as with Meilisearch's typo rule, which is why
// tg need not run when the exact matches fill the page: then, and only then, Total
// and the facets count the exact matches alone (a later page that exact matches
// do not fill brings the typo matches in, and counts them). (Word similarity costs
// about five times ts_rank per row, which is why full-text matches are not scored
// with it.)
//
// Correcting against the vocabulary instead of testing every title's trigrams is
// what keeps typos cheap: a vocabulary of 20,000 words answers a word's trigrams in
// well under a millisecond, where the title trigram index of 100,000 programs
// returned thousands of candidate titles to recheck with word similarity (tens of
// milliseconds for syllable-built words that share many trigrams).
//
// With a category or language filter, the facets still come from the unfiltered
// candidates. When those are complete (no source saturated) the hits are them,
// filtered; otherwise the sources run again with the filters inside them (the btree
// indexes on category and language are ANDed with the GIN bitmaps), so a filtered
// broad query is not a filtered sample.
const (
	// paramsCTE types every parameter once and folds the texts once; the InitPlans
	// "(SELECT q FROM p)" can drive index scans, so one generic plan serves every
	// value (see setupSQL).
	paramsCTE = `p AS MATERIALIZED (SELECT to_tsquery('simple', search_norm($1::text)) AS q, search_norm($2::text) AS tn,
		$3::text AS cat, $4::text AS lang, $5::int AS lim, $6::int AS off, $7::int AS cap,
		to_tsquery('simple', search_norm($8::text)) AS fq,
		ARRAY(SELECT search_norm(w) FROM unnest($9::text[]) WITH ORDINALITY AS t(w, i) ORDER BY i) AS tw,
		to_tsquery('simple', search_norm($10::text)) AS qx, greatest($5::int + $6::int, 1) AS need)`
	ftsCols     = `SELECT id, category, language, published_at, (10 + 10 * ts_rank('{0.1,0.2,0.4,1.0}', tsv, (SELECT q FROM p)))::real AS score FROM `
	trigramCols = `SELECT id, category, language, published_at, word_similarity((SELECT tn FROM p), title_norm)::real AS score FROM `
	capSQL      = `(SELECT cap FROM p)`
	needSQL     = `(SELECT need FROM p)`
	// fragmentSQL checks a short last word on the rows found; coalesce keeps the
	// planner from turning it into a GIN lookup.
	fragmentSQL = `coalesce(tsv @@ (SELECT fq FROM p), false)`
)

// setupSQL precedes every search in the same pipeline, and so in the same implicit
// transaction (it ends at the batch's Sync): transaction-local settings of the
// word-similarity threshold (a setting, not an operator argument), of generic
// plans, which skip re-planning the statement (several milliseconds) on each call,
// and of no heap prefetching (the pages are in memory; prefetch only costs buffer
// lookups). A text query also turns off sequential and plain index scans: every
// table access it makes is a bitmap scan of a GIN index (ANDed with the btrees of
// the filters), and the generic plan, not knowing the words, would otherwise walk
// the whole small vocabulary table (or its primary key) and compute the word
// similarity of every word in it (20 ms for 20,000 words instead of 0.2).
const setupSQL = `SELECT set_config('pg_trgm.word_similarity_threshold', '` + wordSimilarityThreshold + `', true),
	set_config('plan_cache_mode', 'force_generic_plan', true),
	set_config('effective_io_concurrency', '0', true)`

const setupTextSQL = setupSQL + `, set_config('enable_seqscan', 'off', true),
	set_config('enable_indexscan', 'off', true), set_config('enable_indexonlyscan', 'off', true)`

// shape is what the statement of a query depends on besides parameter values.
type shape struct {
	text      bool   // else match-all
	prefix    bool   // the last word is an indexed prefix (tried exact first)
	fragment  bool   // a short last word is checked as a filter
	typoWords int    // words that each need a similar title word for a typo match
	filter    string // SQL condition of the category and language filters, or ""
}

// buildSQL returns the statement for a query of shape sh. Parameters: $1 tsquery
// text, $2 typo text, $3 category, $4 language, $5 limit, $6 offset, $7 the
// per-source cap, $8 fragment tsquery text, $9 typo words, $10 the tsquery text
// with the last word exact. The statement returns
// the capped total, the page's ids in order, and the category and language facets.
func buildSQL(table, words string, sh shape) string {
	filter := sh.filter
	var b strings.Builder
	b.WriteString("WITH " + paramsCTE)
	cte := func(name, body string) { b.WriteString(",\n" + name + " AS MATERIALIZED (" + body + ")") }
	and := func(cond string) string {
		if cond == "" {
			return ""
		}
		return " AND " + cond
	}
	concat := func(names []string) string {
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = "SELECT * FROM " + n
		}
		return strings.Join(parts, " UNION ALL ")
	}
	switch {
	case !sh.text:
		cte("u", `SELECT id, category, language, published_at, 0::real AS score FROM `+table+` WHERE NOT deleted`)
		if filter == "" {
			cte("h", `SELECT * FROM u`)
		} else {
			cte("h", `SELECT * FROM u WHERE `+filter)
		}
	default:
		// titles: whether the sources include ft. The unfiltered sources of a filtered
		// query only count facets (or, when complete, give the hits, and then ft is
		// empty anyway), so they skip it.
		fragment := ""
		if sh.fragment {
			fragment = fragmentSQL
		}
		if sh.typoWords > 0 {
			// tq, the corrected query: for each typo word, its closest vocabulary words
			// and the words it is with two adjacent letters swapped ("nihgts": a swap
			// is one typo, as for Meilisearch, but loses three trigrams of a short
			// word), ORed; all words ANDed; NULL (no typo match) when a word has none.
			fix := make([]string, sh.typoWords)
			for i := range fix {
				w := fmt.Sprintf("(SELECT tw[%d] FROM p)", i+1)
				fix[i] = `(SELECT '(' || string_agg(t, ' | ') || ')' FROM (SELECT plainto_tsquery('simple', word)::text AS t FROM (` +
					`(SELECT word FROM ` + words + ` WHERE word %> ` + w + ` ORDER BY similarity(word, ` + w + `) DESC, word LIMIT ` + maxCorrections + `)` +
					` UNION SELECT word FROM ` + words + ` WHERE word = ANY (ARRAY(SELECT overlay(` + w + ` PLACING substr(` + w + `, j + 1, 1) || substr(` + w + `, j, 1) FROM j FOR 2)` +
					` FROM generate_series(1, length(` + w + `) - 1) AS j))) c) c WHERE t <> '')`
			}
			cte("tq", `SELECT (`+strings.Join(fix, ` || ' & ' || `)+`)::tsquery AS q`)
		}
		sources := func(suffix, f, gate string, titles bool) []string {
			fa, ft, tg := "fa"+suffix, "ft"+suffix, "tg"+suffix
			// The exact matches of the page's hits: when they fill it, typo matches
			// (ranked below them) cannot reach it, and the typo source is skipped.
			exactHits := `(SELECT count(*) FROM ` + fa + `)`
			if f == "" && filter != "" {
				exactHits = `(SELECT count(*) FROM ` + fa + ` WHERE ` + filter + `)`
			}
			if sh.prefix {
				// Exact words first: a prefix is a GIN partial match, which reads the
				// posting lists of every word it begins in full; when the exact words
				// already fill the cap (a frequent last word), it is skipped.
				fx, fp := "fx"+suffix, "fp"+suffix
				cte(fx, ftsCols+table+` WHERE tsv @@ (SELECT qx FROM p)`+and(fragment)+and(f)+and(gate)+` LIMIT `+capSQL)
				cte(fp, ftsCols+table+` WHERE tsv @@ (SELECT q FROM p) AND NOT coalesce(tsv @@ (SELECT qx FROM p), false)`+
					and(fragment)+and(f)+and(gate)+` AND (SELECT count(*) FROM `+fx+`) < `+capSQL+
					` LIMIT `+capSQL+` - (SELECT count(*) FROM `+fx+`)`)
				cte(fa, `SELECT * FROM `+fx+` UNION ALL SELECT * FROM `+fp)
			} else {
				cte(fa, ftsCols+table+` WHERE tsv @@ (SELECT q FROM p)`+and(fragment)+and(f)+and(gate)+` LIMIT `+capSQL)
			}
			names := []string{fa}
			if titles {
				// A quarter of the cap: the title tier of the first pages.
				cte(ft, ftsCols+table+` WHERE title_tsv @@ (SELECT q FROM p)`+and(fragment)+and(f)+
					` AND (SELECT count(*) FROM `+fa+`) >= `+capSQL+` AND id NOT IN (SELECT id FROM `+fa+`) LIMIT `+capSQL+` / 4`)
				names = append(names, ft)
			}
			if sh.typoWords > 0 {
				cte(tg, trigramCols+table+` WHERE title_tsv @@ (SELECT q FROM tq) AND NOT coalesce(tsv @@ (SELECT q FROM p), false)`+
					and(f)+and(gate)+` AND `+exactHits+` < `+needSQL+` LIMIT `+capSQL)
				names = append(names, tg)
			}
			return names
		}
		all := sources("", "", "", filter == "")
		cte("u", concat(all))
		if filter == "" {
			cte("h", `SELECT * FROM u`)
			break
		}
		saturated := make([]string, len(all))
		for i, n := range all {
			saturated[i] = `(SELECT count(*) FROM ` + n + `) >= ` + capSQL
		}
		cte("sat", `SELECT `+strings.Join(saturated, " OR ")+` AS s`)
		filtered := sources("_f", filter, "(SELECT s FROM sat)", true)
		cte("h", `SELECT * FROM u WHERE `+filter+` AND NOT (SELECT s FROM sat) UNION ALL `+concat(filtered))
	}
	b.WriteString(`
SELECT
	least((SELECT count(*) FROM h), ` + capSQL + `),
	(SELECT coalesce(array_agg(id ORDER BY score DESC, published_at DESC NULLS LAST, id), '{}')
		FROM (SELECT id, score, published_at FROM h
			ORDER BY score DESC, published_at DESC NULLS LAST, id
			LIMIT (SELECT lim FROM p) OFFSET (SELECT off FROM p)) pg),
	(SELECT coalesce(jsonb_object_agg(category, n), '{}') FROM (SELECT category, count(*) AS n FROM u GROUP BY category) c),
	(SELECT coalesce(jsonb_object_agg(language, n), '{}') FROM (SELECT language, count(*) AS n FROM u GROUP BY language) l)`)
	return b.String()
}

// Search answers one page of q (see search.Result for ordering and facets).
// An empty text matches every document; a text without a single word matches none.
// Total and the facets are exact up to search.MaxHits candidates per source; beyond
// that they count the candidates examined (see buildSQL), as Meilisearch's
// maxTotalHits does. When the exact matches fill the page, typo matches are not
// looked for, and so not counted.
func (x *Index) Search(ctx context.Context, index string, q search.Query) (search.Result, error) {
	n, err := namesOf(index)
	if err != nil {
		return search.Result{}, err
	}
	q = q.Normalized()
	pt := parseText(q.Text)
	sh := shape{text: strings.TrimSpace(q.Text) != "", prefix: pt.exact != "", fragment: pt.fragment != "", typoWords: len(pt.typoWords)}
	if sh.text && pt.tsq == "" {
		return emptyResult(), nil
	}
	var filters []string
	if q.Category != "" {
		filters = append(filters, "category = (SELECT cat FROM p)")
	}
	if q.Language != "" {
		filters = append(filters, "language = (SELECT lang FROM p)")
	}
	sh.filter = strings.Join(filters, " AND ")
	stmt := buildSQL(ident(n.table), ident(n.words), sh)
	limit, offset := q.Limit, q.Offset()
	if offset >= search.MaxHits {
		limit, offset = 0, 0
	}
	var (
		total  int64
		ids    []string
		byCat  map[string]int
		byLang map[string]int
	)
	// One round trip for the settings and the statement.
	batch := &pgx.Batch{}
	if sh.text {
		batch.Queue(setupTextSQL)
	} else {
		batch.Queue(setupSQL)
	}
	typoWords := pt.typoWords
	if typoWords == nil {
		typoWords = []string{}
	}
	batch.Queue(stmt, pt.tsq, pt.typoText, q.Category, q.Language, limit, offset, search.MaxHits, pt.fragment, typoWords, pt.exact).QueryRow(func(row pgx.Row) error {
		return row.Scan(&total, &ids, &byCat, &byLang)
	})
	if err := x.pool.SendBatch(ctx, batch).Close(); err != nil {
		return search.Result{}, fmt.Errorf("search index %s: %w", index, mapErr(err))
	}
	if ids == nil {
		ids = []string{}
	}
	return search.Result{
		IDs:   ids,
		Total: int(total),
		Facets: map[string]map[string]int{
			search.FacetCategory: nonNilMap(byCat),
			search.FacetLanguage: nonNilMap(byLang),
		},
	}, nil
}
