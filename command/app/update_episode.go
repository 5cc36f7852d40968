package app

import (
	"context"

	"github.com/mediamesh/mediamesh/command/program"
)

// UpdateEpisode sets some of an episode's fields (PATCH /v1/episodes/{id}); a nil
// field is left as it is.
type UpdateEpisode struct {
	Meta            Meta
	EpisodeID       string
	Title           *string
	Number          *int
	Season          *int
	Description     *string
	DurationSeconds *int
}

// UpdateEpisodeHandler handles UpdateEpisode.
type UpdateEpisodeHandler struct{ core core }

// NewUpdateEpisodeHandler returns the handler; it panics on a nil store.
func NewUpdateEpisodeHandler(store EventStore, opts ...Option) UpdateEpisodeHandler {
	return UpdateEpisodeHandler{core: newCore(store, opts)}
}

// Handle records an EpisodeUpdated with the fields that changed (nothing when none
// did). A new season/number must be free in the program (ErrDuplicateEpisodeNumber);
// an archived episode cannot be updated (ErrInvalidState). The result's version is
// the program stream's.
func (h UpdateEpisodeHandler) Handle(ctx context.Context, cmd UpdateEpisode) (Result, error) {
	return h.core.changeEpisode(ctx, cmd.Meta, cmd.EpisodeID, func(p *program.Program) error {
		return p.UpdateEpisode(cmd.EpisodeID, program.EpisodeChanges{
			Title:           cmd.Title,
			Number:          cmd.Number,
			Season:          cmd.Season,
			Description:     cmd.Description,
			DurationSeconds: cmd.DurationSeconds,
		})
	})
}
