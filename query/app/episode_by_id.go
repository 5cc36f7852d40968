package app

import (
	"context"
	"fmt"
)

// EpisodeByID is GET /v1/episodes/{id}.
type EpisodeByID struct {
	ID string
	ReadOptions
}

// EpisodeReadModel reads one episode.
type EpisodeReadModel interface {
	// Episode returns the episode if it is visible (a published episode of a
	// published program; nil otherwise) and the program it belongs to ("" when the
	// episode is unknown to the layer). Episodes never move between programs, so
	// the program id is a stable fact the cache may keep.
	Episode(ctx context.Context, id string, after *WritePoint) (*Episode, string, Snapshot, error)
}

// EpisodeByIDHandler answers GET /v1/episodes/{id}.
type EpisodeByIDHandler struct {
	c  *core
	rm EpisodeReadModel
}

// Handle returns the rendered episode, or a *MissingError (ErrNotFound).
func (h *EpisodeByIDHandler) Handle(ctx context.Context, q EpisodeByID) (Answer, error) {
	ctx, cancel := h.c.bound(ctx)
	defer cancel()
	id, ok := canonicalUUID(q.ID)
	if !ok {
		return Answer{}, &MissingError{What: "episode", ID: q.ID, Snapshot: Snapshot{Includes: true}}
	}
	var (
		ep        *Episode
		programID string
	)
	snap, err := consistentRead(ctx, q.After, h.c.waiter, h.c.wait, ProjectionCatalog, func(ctx context.Context) (Snapshot, error) {
		var s Snapshot
		var err error
		ep, programID, s, err = h.rm.Episode(ctx, id, q.After)
		return s, err
	})
	if err != nil {
		return Answer{}, fmt.Errorf("episode %s: %w", id, err)
	}
	if ep == nil {
		return Answer{}, &MissingError{What: "episode", ID: id, Snapshot: snap, ProgramID: programID}
	}
	out := *ep
	relative := out.Images.Relative()
	out.Images = out.Images.Absolute(h.c.base(q.Base))
	res, err := render(&out, snap)
	if err != nil {
		return Answer{}, err
	}
	res.ProgramID = ep.ProgramID
	res.BaseDependent = relative && h.c.cdnBase == ""
	return h.c.answer(res, q.After != nil), nil
}
