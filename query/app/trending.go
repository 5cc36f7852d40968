package app

import (
	"context"
	"fmt"
)

// Rankings served from the engagement projection's buckets.
const (
	// RankingTrending: plays of a recent window, each weighed down by its age.
	RankingTrending = "trending"
	// RankingPopular: plays of the last 30 days.
	RankingPopular = "popular"
)

// Ranked is GET /v1/trending and GET /v1/popular: ?category=&limit= (and page, as
// every list). An empty Category is the ranking over every category.
type Ranked struct {
	Category string
	Page     int
	Limit    int
	ReadOptions
}

// RankingReadModel reads a precomputed ranking (Redis sorted sets, PostgreSQL
// fallback).
type RankingReadModel interface {
	// Ranked returns up to limit program ids of ranking in category ("" for all),
	// best first, starting at offset, and how many programs the ranking holds.
	Ranked(ctx context.Context, ranking, category string, offset, limit int) ([]string, int, error)
}

// RankedHandler answers one ranking.
type RankedHandler struct {
	c        *core
	ranking  string
	rankings RankingReadModel
	programs ProgramReadModel
}

// Normalize validates q and returns its category, page and limit.
func (q Ranked) Normalize() (string, int, int, error) {
	var fields []FieldError
	if q.Category != "" && !validSlug(q.Category) {
		fields = append(fields, FieldError{Field: "category", Message: "must be a lowercase slug of at most 64 characters"})
	}
	page, limit := paging(q.Page, q.Limit, &fields)
	if len(fields) > 0 {
		return "", 0, 0, &ValidationError{Fields: fields}
	}
	return q.Category, page, limit, nil
}

// Handle returns the page of the ranking, hydrated from the program read model;
// programs that are no longer visible are left out of the page.
func (h *RankedHandler) Handle(ctx context.Context, q Ranked) (Answer, error) {
	ctx, cancel := h.c.bound(ctx)
	defer cancel()
	category, page, limit, err := q.Normalize()
	if err != nil {
		return Answer{}, err
	}
	offset := pageOffset(page, limit)
	ids, total, err := h.rankings.Ranked(ctx, h.ranking, category, offset, limit)
	if err != nil {
		return Answer{}, fmt.Errorf("%s: %w", h.ranking, err)
	}
	progs, snap, err := hydrate(ctx, h.c, h.programs, ids, q.After)
	if err != nil {
		return Answer{}, fmt.Errorf("%s: %w", h.ranking, err)
	}
	if len(ids) == 0 {
		snap.Source = SourcePostgres
	}
	res, err := h.c.renderPrograms(progs, page, limit, total, nil, q.Base, snap)
	if err != nil {
		return Answer{}, err
	}
	return h.c.answer(res, q.After != nil), nil
}
