package app

import (
	"context"
	"fmt"
)

// ReadOptions are what every discovery query carries besides its parameters.
type ReadOptions struct {
	// Base is the scheme and host of the request ("https://api.example.com"): the
	// prefix of relative asset URLs when no CDN base URL is configured.
	Base string
	// After is the write of a consistency token the answer must include, or nil.
	After *WritePoint
}

// ProgramByID is GET /v1/programs/{id}.
type ProgramByID struct {
	ID string
	ReadOptions
}

// ProgramReadModel reads visible programs. The cache's document layer (Redis, then
// PostgreSQL) and the PostgreSQL read model implement it.
type ProgramReadModel interface {
	// Program returns the program if it exists and is visible (nil otherwise), the
	// version of its catalog row (0 when it has none, or when the layer cannot
	// tell), and the snapshot it was read from. With after set, the snapshot says
	// whether the answer includes that write.
	Program(ctx context.Context, id string, after *WritePoint) (*Program, int64, Snapshot, error)
	// Programs returns the visible programs among ids, by id; invisible and unknown
	// ids are absent.
	Programs(ctx context.Context, ids []string, after *WritePoint) (map[string]*Program, Snapshot, error)
}

// MissingError is the ErrNotFound of a by-id query, with what the cache needs to
// keep the negative answer: the snapshot it was read from, the catalog row version
// (to prove to a later consistency token that the answer includes its write) and,
// for an episode, the program it belongs to ("" when the episode is unknown).
type MissingError struct {
	What      string
	ID        string
	Snapshot  Snapshot
	Version   int64
	ProgramID string
}

func (e *MissingError) Error() string { return fmt.Sprintf("%s %s: %s", e.What, e.ID, ErrNotFound) }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *MissingError) Is(target error) bool { return target == ErrNotFound }

// ProgramByIDHandler answers GET /v1/programs/{id} from the program read model.
type ProgramByIDHandler struct {
	c  *core
	rm ProgramReadModel
}

// Handle returns the rendered program, or a *MissingError (ErrNotFound) when the id
// is malformed, unknown or not visible.
func (h *ProgramByIDHandler) Handle(ctx context.Context, q ProgramByID) (Answer, error) {
	ctx, cancel := h.c.bound(ctx)
	defer cancel()
	id, ok := canonicalUUID(q.ID)
	if !ok {
		return Answer{}, &MissingError{What: "program", ID: q.ID, Snapshot: Snapshot{Includes: true}}
	}
	var (
		prog    *Program
		version int64
	)
	snap, err := consistentRead(ctx, q.After, h.c.waiter, h.c.wait, ProjectionCatalog, func(ctx context.Context) (Snapshot, error) {
		var s Snapshot
		var err error
		prog, version, s, err = h.rm.Program(ctx, id, q.After)
		return s, err
	})
	if err != nil {
		return Answer{}, fmt.Errorf("program %s: %w", id, err)
	}
	if prog == nil {
		return Answer{}, &MissingError{What: "program", ID: id, Snapshot: snap, Version: version}
	}
	res, err := h.c.renderProgram(prog, q.Base, snap)
	if err != nil {
		return Answer{}, err
	}
	return h.c.answer(res, q.After != nil), nil
}

// renderProgram renders one program with absolute asset URLs.
func (c *core) renderProgram(p *Program, base string, snap Snapshot) (*Response, error) {
	out := *p
	if out.Tags == nil {
		out.Tags = []string{}
	}
	relative := out.Images.Relative()
	out.Images = out.Images.Absolute(c.base(base))
	res, err := render(&out, snap)
	if err != nil {
		return nil, err
	}
	res.Version = p.Version
	res.BaseDependent = relative && c.cdnBase == ""
	return res, nil
}
