package app

import (
	"context"
	"fmt"
	"math"
)

// ProgramEpisodes is GET /v1/programs/{id}/episodes?season=&page=&limit=. Zero
// Season, Page and Limit mean "not given" (every season, page 1, limit 20).
type ProgramEpisodes struct {
	ProgramID string
	Season    int
	Page      int
	Limit     int
	ReadOptions
}

// EpisodesReadModel reads the visible episodes of a program.
type EpisodesReadModel interface {
	// Episodes returns the visible episodes of the program ordered by season, then
	// number, and whether the program itself is visible (when it is not, there are
	// no episodes and the list is a 404). A program has at most a few thousand
	// episodes, so the whole list is read and paged here; that is also the shape
	// the Redis document holds.
	Episodes(ctx context.Context, programID string, after *WritePoint) ([]Episode, bool, Snapshot, error)
}

// ProgramEpisodesHandler answers the episode list of a program.
type ProgramEpisodesHandler struct {
	c  *core
	rm EpisodesReadModel
}

// maxSeason bounds the season filter (far above any real catalog).
const maxSeason = 1_000_000

// Handle validates the query and returns the page; invalid input is a
// *ValidationError, an invisible program a *MissingError.
func (h *ProgramEpisodesHandler) Handle(ctx context.Context, q ProgramEpisodes) (Answer, error) {
	ctx, cancel := h.c.bound(ctx)
	defer cancel()
	var fields []FieldError
	if q.Season < 0 || q.Season > maxSeason {
		fields = append(fields, FieldError{Field: "season", Message: "must be an integer from 1 to 1000000"})
	}
	page, limit := paging(q.Page, q.Limit, &fields)
	if len(fields) > 0 {
		return Answer{}, &ValidationError{Fields: fields}
	}
	id, ok := canonicalUUID(q.ProgramID)
	if !ok {
		return Answer{}, &MissingError{What: "program", ID: q.ProgramID, Snapshot: Snapshot{Includes: true}}
	}
	var (
		eps     []Episode
		visible bool
	)
	snap, err := consistentRead(ctx, q.After, h.c.waiter, h.c.wait, ProjectionCatalog, func(ctx context.Context) (Snapshot, error) {
		var s Snapshot
		var err error
		eps, visible, s, err = h.rm.Episodes(ctx, id, q.After)
		return s, err
	})
	if err != nil {
		return Answer{}, fmt.Errorf("episodes of program %s: %w", id, err)
	}
	if !visible {
		return Answer{}, &MissingError{What: "program", ID: id, Snapshot: snap}
	}
	res, err := h.c.renderEpisodePage(eps, q.Season, page, limit, q.Base, snap)
	if err != nil {
		return Answer{}, err
	}
	return h.c.answer(res, q.After != nil), nil
}

// renderEpisodePage renders one page of eps (already ordered), filtered by season.
func (c *core) renderEpisodePage(eps []Episode, season, page, limit int, base string, snap Snapshot) (*Response, error) {
	if season > 0 {
		filtered := make([]Episode, 0, len(eps))
		for _, e := range eps {
			if e.Season == season {
				filtered = append(filtered, e)
			}
		}
		eps = filtered
	}
	items := []Episode{}
	relative := false
	if offset := pageOffset(page, limit); offset < len(eps) {
		for _, e := range eps[offset:min(len(eps), offset+limit)] {
			relative = relative || e.Images.Relative()
			e.Images = e.Images.Absolute(c.base(base))
			items = append(items, e)
		}
	}
	res, err := render(Page[Episode]{Items: items, Page: page, Limit: limit, Total: len(eps)}, snap)
	if err != nil {
		return nil, err
	}
	res.BaseDependent = relative && c.cdnBase == ""
	return res, nil
}

// pageOffset is (page-1)*limit, saturated: a page far beyond the end is an empty
// page, not an overflow.
func pageOffset(page, limit int) int {
	if page-1 > math.MaxInt/limit {
		return math.MaxInt
	}
	return (page - 1) * limit
}
