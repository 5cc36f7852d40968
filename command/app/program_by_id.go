package app

import (
	"context"
	"time"

	"github.com/mediamesh/mediamesh/command/program"
)

// ProgramView is the editorial view of a program (GET /v1/cms/programs/{id}): its
// exact current state from the event store, with the version to send as If-Match.
// Times are the OccurredAt of the stream's events, in UTC.
type ProgramView struct {
	ID          string    `json:"id"`
	Title       string    `json:"title"`
	Description string    `json:"description"`
	Category    string    `json:"category"`
	Language    string    `json:"language"`
	Tags        []string  `json:"tags"` // never null
	ExternalID  string    `json:"external_id"`
	Status      string    `json:"status"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	// UpdatedAt is the time of the stream's last event, an episode's included.
	UpdatedAt time.Time `json:"updated_at"`
	// PublishedAt is the first publication, null until then.
	PublishedAt *time.Time `json:"published_at"`
	// Episodes are ordered by season, then number; archived ones included.
	Episodes []EpisodeSummary `json:"episodes"`
}

// EpisodeSummary is an episode as ProgramView lists it. Version is the program
// stream's version, which is what an episode's If-Match names.
type EpisodeSummary struct {
	ID      string `json:"id"`
	Title   string `json:"title"`
	Number  int    `json:"number"`
	Season  int    `json:"season"`
	Status  string `json:"status"`
	Version int64  `json:"version"`
}

// ProgramByIDHandler reads a program's editorial view from the event store (editors
// need the exact state and version, so this read bypasses the projections by design).
type ProgramByIDHandler struct{ core core }

// NewProgramByIDHandler returns the handler; it panics on a nil store.
func NewProgramByIDHandler(store EventStore, opts ...Option) ProgramByIDHandler {
	return ProgramByIDHandler{core: newCore(store, opts)}
}

// Handle returns the program's view, or ErrNotFound.
func (h ProgramByIDHandler) Handle(ctx context.Context, id string) (ProgramView, error) {
	l, err := h.core.loadProgram(ctx, id)
	if err != nil {
		return ProgramView{}, err
	}
	p, version := l.program, l.version()
	eps := p.Episodes()
	summaries := make([]EpisodeSummary, len(eps))
	for i, e := range eps {
		summaries[i] = EpisodeSummary{ID: e.ID, Title: e.Title, Number: e.Number, Season: e.Season, Status: string(e.Status), Version: version}
	}
	return ProgramView{
		ID:          p.ID(),
		Title:       p.Title(),
		Description: p.Description(),
		Category:    p.Category(),
		Language:    p.Language(),
		Tags:        p.Tags(),
		ExternalID:  p.ExternalID(),
		Status:      string(p.Status()),
		Version:     version,
		CreatedAt:   p.CreatedAt().UTC(),
		UpdatedAt:   p.UpdatedAt().UTC(),
		PublishedAt: utcPtr(p.PublishedAt()),
		Episodes:    summaries,
	}, nil
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// episodeView builds an EpisodeView; shared with EpisodeByIDHandler.
func episodeView(programID string, version int64, e program.Episode) EpisodeView {
	return EpisodeView{
		ID:              e.ID,
		ProgramID:       programID,
		Title:           e.Title,
		Number:          e.Number,
		Season:          e.Season,
		Description:     e.Description,
		DurationSeconds: e.DurationSeconds,
		ExternalID:      e.ExternalID,
		Status:          string(e.Status),
		Version:         version,
		CreatedAt:       e.CreatedAt.UTC(),
		UpdatedAt:       e.UpdatedAt.UTC(),
		PublishedAt:     utcPtr(e.PublishedAt),
	}
}
