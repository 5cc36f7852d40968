package app

import (
	"context"

	"github.com/mediamesh/mediamesh/command/program"
)

// ArchiveEpisode is POST /v1/episodes/{id}/archive.
type ArchiveEpisode struct {
	Meta      Meta
	EpisodeID string
}

// ArchiveEpisodeHandler handles ArchiveEpisode.
type ArchiveEpisodeHandler struct{ core core }

// NewArchiveEpisodeHandler returns the handler; it panics on a nil store.
func NewArchiveEpisodeHandler(store EventStore, opts ...Option) ArchiveEpisodeHandler {
	return ArchiveEpisodeHandler{core: newCore(store, opts)}
}

// Handle archives the episode from any state (it keeps holding its number); an
// archived one is left as it is (Changed false); an episode of an archived program
// can no longer change (program.ErrInvalidState).
// The episode resolves to its program through its pointer stream; the result's
// version is the program stream's.
func (h ArchiveEpisodeHandler) Handle(ctx context.Context, cmd ArchiveEpisode) (Result, error) {
	return h.core.changeEpisode(ctx, cmd.Meta, cmd.EpisodeID, func(p *program.Program) error {
		return p.ArchiveEpisode(cmd.EpisodeID)
	})
}
