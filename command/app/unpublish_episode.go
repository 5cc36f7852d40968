package app

import (
	"context"

	"github.com/mediamesh/mediamesh/command/program"
)

// UnpublishEpisode is POST /v1/episodes/{id}/unpublish.
type UnpublishEpisode struct {
	Meta      Meta
	EpisodeID string
}

// UnpublishEpisodeHandler handles UnpublishEpisode.
type UnpublishEpisodeHandler struct{ core core }

// NewUnpublishEpisodeHandler returns the handler; it panics on a nil store.
func NewUnpublishEpisodeHandler(store EventStore, opts ...Option) UnpublishEpisodeHandler {
	return UnpublishEpisodeHandler{core: newCore(store, opts)}
}

// Handle unpublishes a published episode; an unpublished one is left as it is
// (Changed false); a draft or archived episode, or one of an archived program, is
// program.ErrInvalidState.
// The episode resolves to its program through its pointer stream; the result's
// version is the program stream's.
func (h UnpublishEpisodeHandler) Handle(ctx context.Context, cmd UnpublishEpisode) (Result, error) {
	return h.core.changeEpisode(ctx, cmd.Meta, cmd.EpisodeID, func(p *program.Program) error {
		return p.UnpublishEpisode(cmd.EpisodeID)
	})
}
