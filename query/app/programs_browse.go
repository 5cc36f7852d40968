package app

import (
	"context"
	"encoding/json"
	"fmt"
)

// BrowsePrograms is GET /v1/programs?category=&language=&tag=&sort=recent|title&page=&limit=.
// Zero Page and Limit mean "not given"; an empty Sort is "recent".
type BrowsePrograms struct {
	Category string
	Language string
	Tag      string
	Sort     string
	Page     int
	Limit    int
	ReadOptions
}

// Sort orders of the program list.
const (
	// SortRecent: newest first publication first, then id.
	SortRecent = "recent"
	// SortTitle: title (byte order of the stored title), then id.
	SortTitle = "title"
)

// BrowseFilter is a validated browse query with canonical values.
type BrowseFilter struct {
	Category string
	Language string
	Tag      string
	Sort     string
	Offset   int
	Limit    int
}

// BrowseReadModel lists visible programs.
type BrowseReadModel interface {
	// Browse returns the page of visible programs matching f in f.Sort order and the
	// number of all matches.
	Browse(ctx context.Context, f BrowseFilter, after *WritePoint) ([]Program, int, Snapshot, error)
}

// BrowseProgramsHandler answers the program list.
type BrowseProgramsHandler struct {
	c  *core
	rm BrowseReadModel
}

// Normalize validates q and returns its canonical filter (language in canonical
// BCP 47 form, defaults applied), the page and the limit. The cache keys lists on
// the filter, so that equivalent queries share an entry.
func (q BrowsePrograms) Normalize() (BrowseFilter, int, error) {
	var fields []FieldError
	f := BrowseFilter{Category: q.Category, Tag: q.Tag, Sort: q.Sort}
	if f.Category != "" && !validSlug(f.Category) {
		fields = append(fields, FieldError{Field: "category", Message: "must be a lowercase slug of at most 64 characters"})
	}
	if f.Tag != "" && !validSlug(f.Tag) {
		fields = append(fields, FieldError{Field: "tag", Message: "must be a lowercase slug of at most 64 characters"})
	}
	if q.Language != "" {
		lang, ok := canonicalLanguage(q.Language)
		if !ok {
			fields = append(fields, FieldError{Field: "language", Message: "must be a BCP 47 language tag (e.g. en, pt-BR)"})
		}
		f.Language = lang
	}
	switch f.Sort {
	case "":
		f.Sort = SortRecent
	case SortRecent, SortTitle:
	default:
		fields = append(fields, FieldError{Field: "sort", Message: "must be recent or title"})
	}
	page, limit := paging(q.Page, q.Limit, &fields)
	if len(fields) > 0 {
		return BrowseFilter{}, 0, &ValidationError{Fields: fields}
	}
	f.Offset, f.Limit = pageOffset(page, limit), limit
	return f, page, nil
}

// Handle validates q and returns the rendered page.
func (h *BrowseProgramsHandler) Handle(ctx context.Context, q BrowsePrograms) (Answer, error) {
	ctx, cancel := h.c.bound(ctx)
	defer cancel()
	f, page, err := q.Normalize()
	if err != nil {
		return Answer{}, err
	}
	var (
		items []Program
		total int
	)
	snap, err := consistentRead(ctx, q.After, h.c.waiter, h.c.wait, ProjectionCatalog, func(ctx context.Context) (Snapshot, error) {
		var s Snapshot
		var err error
		items, total, s, err = h.rm.Browse(ctx, f, q.After)
		return s, err
	})
	if err != nil {
		return Answer{}, fmt.Errorf("browse programs: %w", err)
	}
	ptrs := make([]*Program, len(items))
	for i := range items {
		ptrs[i] = &items[i]
	}
	res, err := h.c.renderPrograms(ptrs, page, f.Limit, total, nil, q.Base, snap)
	if err != nil {
		return Answer{}, err
	}
	return h.c.answer(res, q.After != nil), nil
}

// programList is a list of programs, with facets for search.
type programList struct {
	Items  []json.RawMessage         `json:"items"`
	Page   int                       `json:"page"`
	Limit  int                       `json:"limit"`
	Total  int                       `json:"total"`
	Facets map[string]map[string]int `json:"facets,omitempty"`
}

// renderPrograms renders a list of programs (nil entries are skipped) with
// absolute asset URLs under base.
func (c *core) renderPrograms(progs []*Program, page, limit, total int, facets map[string]map[string]int, base string, snap Snapshot) (*Response, error) {
	list := programList{Items: make([]json.RawMessage, 0, len(progs)), Page: page, Limit: limit, Total: total, Facets: facets}
	relative := false
	for _, p := range progs {
		if p == nil {
			continue
		}
		out := *p
		if out.Tags == nil {
			out.Tags = []string{}
		}
		relative = relative || out.Images.Relative()
		out.Images = out.Images.Absolute(c.base(base))
		b, err := json.Marshal(&out)
		if err != nil {
			return nil, fmt.Errorf("render program %s: %w", p.ID, err)
		}
		list.Items = append(list.Items, b)
	}
	res, err := render(&list, snap)
	if err != nil {
		return nil, err
	}
	res.BaseDependent = relative && c.cdnBase == ""
	return res, nil
}
