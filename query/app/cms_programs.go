package app

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// CMSProgramList is GET /v1/cms/programs: editors list every program whatever its
// status. Zero Page and Limit mean "not given" (page 1, limit 20); use ParsePaging
// on the raw query parameters so that an explicit zero is rejected.
type CMSProgramList struct {
	// Status filters on one status; empty lists all.
	Status string
	// Q matches a substring of the title, case-insensitively, or the exact
	// external_id; empty matches everything.
	Q     string
	Page  int
	Limit int
}

// CMSProgramItem is a program as the CMS list shows it: the editorial view of
// GET /v1/cms/programs/{id} without episodes. Version is the program stream's
// version, the one an editor sends as If-Match.
type CMSProgramItem struct {
	ID          string     `json:"id"`
	Title       string     `json:"title"`
	Description string     `json:"description"`
	Category    string     `json:"category"`
	Language    string     `json:"language"`
	Tags        []string   `json:"tags"` // never null
	ExternalID  string     `json:"external_id"`
	Status      string     `json:"status"`
	Version     int64      `json:"version"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	PublishedAt *time.Time `json:"published_at"`
}

// CMSProgramFilter is a validated CMS list query with defaults applied.
type CMSProgramFilter struct {
	Status string
	Q      string
	Offset int
	Limit  int
}

// CMSProgramsReadModel is the editorial list read model (projections/editorial).
type CMSProgramsReadModel interface {
	// ListCMSPrograms returns the page of programs matching f, ordered by
	// updated_at descending then id, and the number of all matching programs.
	ListCMSPrograms(ctx context.Context, f CMSProgramFilter) (items []CMSProgramItem, total int, err error)
}

// CMSProgramsHandler answers the CMS program list from the editorial projection.
// The list may trail the event store by the projection's lag; a caller that needs
// its own write first waits for the consistency token's position.
type CMSProgramsHandler struct {
	rm CMSProgramsReadModel
}

// NewCMSProgramsHandler returns the handler over rm.
func NewCMSProgramsHandler(rm CMSProgramsReadModel) (*CMSProgramsHandler, error) {
	if rm == nil {
		return nil, errors.New("cms programs handler: nil read model")
	}
	return &CMSProgramsHandler{rm: rm}, nil
}

// programStatuses are the statuses a program can have.
var programStatuses = map[string]bool{"draft": true, "published": true, "unpublished": true, "archived": true}

// maxQLength bounds q as the API bounds titles.
const maxQLength = 200

// Handle validates q and returns the page. Invalid input is a *ValidationError.
func (h *CMSProgramsHandler) Handle(ctx context.Context, q CMSProgramList) (Page[CMSProgramItem], error) {
	var fields []FieldError
	if q.Status != "" && !programStatuses[q.Status] {
		fields = append(fields, FieldError{Field: "status", Message: "must be one of draft, published, unpublished, archived"})
	}
	if !utf8.ValidString(q.Q) || utf8.RuneCountInString(q.Q) > maxQLength || containsNUL(q.Q) {
		fields = append(fields, FieldError{Field: "q", Message: "must be valid text of at most 200 characters"})
	}
	page, limit := paging(q.Page, q.Limit, &fields)
	if len(fields) > 0 {
		return Page[CMSProgramItem]{}, &ValidationError{Fields: fields}
	}
	offset := math.MaxInt64 // a page far beyond the end is an empty page, not an overflow
	if page-1 <= math.MaxInt64/limit {
		offset = (page - 1) * limit
	}
	items, total, err := h.rm.ListCMSPrograms(ctx, CMSProgramFilter{Status: q.Status, Q: strings.TrimSpace(q.Q), Offset: offset, Limit: limit})
	if err != nil {
		return Page[CMSProgramItem]{}, fmt.Errorf("list cms programs: %w", err)
	}
	if items == nil {
		items = []CMSProgramItem{}
	}
	return Page[CMSProgramItem]{Items: items, Page: page, Limit: limit, Total: total}, nil
}

// containsNUL reports a NUL byte, which PostgreSQL text cannot hold.
func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}
