package app

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Search is GET /v1/search?q=&category=&language=&page=&limit=.
type Search struct {
	Q        string
	Category string
	Language string
	Page     int
	Limit    int
	ReadOptions
}

// SearchQuery is a validated search: Text is the query folded to lower case with
// its spaces collapsed (the index folds case and accents itself, so this changes
// no result and lets equivalent queries share a cache entry).
type SearchQuery struct {
	Text     string
	Category string
	Language string
	Page     int
	Limit    int
}

// SearchHits is one page of a search: program ids, best first, the number of
// matches and the facets (API.md: {category: {slug: count}, language: {tag: count}}).
type SearchHits struct {
	IDs    []string
	Total  int
	Facets map[string]map[string]int
}

// SearchIndex is the search port of the query side (infra/postgres/readmodel's
// SearchIndex adapts the search projection's reader). The index is typo tolerant.
type SearchIndex interface {
	// Search runs q. With after set, the snapshot says whether the index, as read,
	// includes that write (the search projection's checkpoint, read where the index
	// is read).
	Search(ctx context.Context, q SearchQuery, after *WritePoint) (SearchHits, Snapshot, error)
}

// Facet names of a search answer.
const (
	FacetCategory = "category"
	FacetLanguage = "language"
)

// SearchHandler answers GET /v1/search: ids from the search index, programs from
// the program read model (so a program unpublished since the index was written is
// left out, whatever the index says).
type SearchHandler struct {
	c        *core
	index    SearchIndex
	programs ProgramReadModel
}

// Normalize validates q and returns the index query.
func (q Search) Normalize() (SearchQuery, error) {
	var fields []FieldError
	text := strings.TrimSpace(q.Q)
	switch n := utf8.RuneCountInString(text); {
	case !utf8.ValidString(q.Q) || containsNUL(q.Q):
		fields = append(fields, FieldError{Field: "q", Message: "must be valid text"})
	case n == 0:
		fields = append(fields, FieldError{Field: "q", Message: "is required (1 to 200 characters)"})
	case n > maxQLength:
		fields = append(fields, FieldError{Field: "q", Message: "must be at most 200 characters"})
	}
	sq := SearchQuery{Text: strings.ToLower(strings.Join(strings.Fields(text), " ")), Category: q.Category}
	if sq.Category != "" && !validSlug(sq.Category) {
		fields = append(fields, FieldError{Field: "category", Message: "must be a lowercase slug of at most 64 characters"})
	}
	if q.Language != "" {
		lang, ok := canonicalLanguage(q.Language)
		if !ok {
			fields = append(fields, FieldError{Field: "language", Message: "must be a BCP 47 language tag (e.g. en, pt-BR)"})
		}
		sq.Language = lang
	}
	sq.Page, sq.Limit = paging(q.Page, q.Limit, &fields)
	if len(fields) > 0 {
		return SearchQuery{}, &ValidationError{Fields: fields}
	}
	return sq, nil
}

// Handle validates q, searches, and renders the hydrated page. With a consistency
// token, the index must include the write and the programs are read with the
// catalog's exact check.
func (h *SearchHandler) Handle(ctx context.Context, q Search) (Answer, error) {
	ctx, cancel := h.c.bound(ctx)
	defer cancel()
	sq, err := q.Normalize()
	if err != nil {
		return Answer{}, err
	}
	var hits SearchHits
	snap, err := consistentRead(ctx, q.After, h.c.waiter, h.c.wait, ProjectionSearch, func(ctx context.Context) (Snapshot, error) {
		var s Snapshot
		var err error
		hits, s, err = h.index.Search(ctx, sq, q.After)
		return s, err
	})
	if err != nil {
		return Answer{}, fmt.Errorf("search: %w", err)
	}
	progs, _, err := hydrate(ctx, h.c, h.programs, hits.IDs, q.After)
	if err != nil {
		return Answer{}, fmt.Errorf("search: %w", err)
	}
	facets := map[string]map[string]int{FacetCategory: {}, FacetLanguage: {}}
	for k, m := range hits.Facets {
		if _, ok := facets[k]; ok && m != nil {
			facets[k] = m
		}
	}
	res, err := h.c.renderPrograms(progs, sq.Page, sq.Limit, hits.Total, facets, q.Base, snap)
	if err != nil {
		return Answer{}, err
	}
	return h.c.answer(res, q.After != nil), nil
}

// hydrate reads the programs of ids in their order; invisible ones are nil. With
// after set, the read waits until the catalog includes the write.
func hydrate(ctx context.Context, c *core, rm ProgramReadModel, ids []string, after *WritePoint) ([]*Program, Snapshot, error) {
	if len(ids) == 0 {
		return nil, Snapshot{Includes: true}, nil
	}
	var got map[string]*Program
	snap, err := consistentRead(ctx, after, c.waiter, c.wait, ProjectionCatalog, func(ctx context.Context) (Snapshot, error) {
		var s Snapshot
		var err error
		got, s, err = rm.Programs(ctx, ids, after)
		return s, err
	})
	if err != nil {
		return nil, snap, err
	}
	out := make([]*Program, len(ids))
	for i, id := range ids {
		out[i] = got[id]
	}
	return out, snap, nil
}
