package app

import (
	"context"

	"github.com/mediamesh/mediamesh/command/program"
)

// PublishEpisode is POST /v1/episodes/{id}/publish.
type PublishEpisode struct {
	Meta      Meta
	EpisodeID string
}

// PublishEpisodeHandler handles PublishEpisode.
type PublishEpisodeHandler struct{ core core }

// NewPublishEpisodeHandler returns the handler; it panics on a nil store.
func NewPublishEpisodeHandler(store EventStore, opts ...Option) PublishEpisodeHandler {
	return PublishEpisodeHandler{core: newCore(store, opts)}
}

// Handle publishes a draft or unpublished episode; a published one is left as it is
// (Changed false); an archived episode, or one of an archived program, is
// program.ErrInvalidState.
// The episode resolves to its program through its pointer stream; the result's
// version is the program stream's.
func (h PublishEpisodeHandler) Handle(ctx context.Context, cmd PublishEpisode) (Result, error) {
	return h.core.changeEpisode(ctx, cmd.Meta, cmd.EpisodeID, func(p *program.Program) error {
		return p.PublishEpisode(cmd.EpisodeID)
	})
}
