package app

import (
	"context"
	"fmt"
	"time"
)

// EpisodeView is the editorial view of an episode (GET /v1/cms/episodes/{id}).
// Version is its program stream's version, the one an episode's If-Match names.
type EpisodeView struct {
	ID              string     `json:"id"`
	ProgramID       string     `json:"program_id"`
	Title           string     `json:"title"`
	Number          int        `json:"number"`
	Season          int        `json:"season"`
	Description     string     `json:"description"`
	DurationSeconds int        `json:"duration_seconds"`
	ExternalID      string     `json:"external_id"`
	Status          string     `json:"status"`
	Version         int64      `json:"version"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	PublishedAt     *time.Time `json:"published_at"`
}

// EpisodeByIDHandler reads an episode's editorial view from the event store: the
// pointer stream names its program, whose stream holds the episode.
type EpisodeByIDHandler struct{ core core }

// NewEpisodeByIDHandler returns the handler; it panics on a nil store.
func NewEpisodeByIDHandler(store EventStore, opts ...Option) EpisodeByIDHandler {
	return EpisodeByIDHandler{core: newCore(store, opts)}
}

// Handle returns the episode's view, or ErrNotFound (also for a pointer whose add
// never reached the program's stream).
func (h EpisodeByIDHandler) Handle(ctx context.Context, id string) (EpisodeView, error) {
	programID, err := h.core.resolveEpisode(ctx, id)
	if err != nil {
		return EpisodeView{}, err
	}
	l, err := h.core.loadProgram(ctx, programID)
	if err != nil {
		return EpisodeView{}, err
	}
	e, ok := l.program.Episode(id)
	if !ok {
		return EpisodeView{}, fmt.Errorf("episode %s is not in program %s: %w", id, programID, ErrNotFound)
	}
	return episodeView(programID, l.version(), e), nil
}
