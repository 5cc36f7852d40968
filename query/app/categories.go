package app

import (
	"context"
	"fmt"
)

// Categories is GET /v1/categories: every category with at least one visible
// program, as a bare array ordered by slug.
type Categories struct {
	ReadOptions
}

// CategoriesReadModel reads the category counts.
type CategoriesReadModel interface {
	Categories(ctx context.Context, after *WritePoint) ([]Category, Snapshot, error)
}

// CategoriesHandler answers GET /v1/categories.
type CategoriesHandler struct {
	c  *core
	rm CategoriesReadModel
}

// Handle returns the rendered category list.
func (h *CategoriesHandler) Handle(ctx context.Context, q Categories) (Answer, error) {
	ctx, cancel := h.c.bound(ctx)
	defer cancel()
	var cats []Category
	snap, err := consistentRead(ctx, q.After, h.c.waiter, h.c.wait, ProjectionCatalog, func(ctx context.Context) (Snapshot, error) {
		var s Snapshot
		var err error
		cats, s, err = h.rm.Categories(ctx, q.After)
		return s, err
	})
	if err != nil {
		return Answer{}, fmt.Errorf("categories: %w", err)
	}
	if cats == nil {
		cats = []Category{}
	}
	res, err := render(cats, snap)
	if err != nil {
		return Answer{}, err
	}
	return h.c.answer(res, q.After != nil), nil
}
