package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

// CreateProgram creates a draft program (POST /v1/programs).
type CreateProgram struct {
	Meta                                   Meta
	Title, Description, Category, Language string
	Tags                                   []string
	ExternalID                             string
}

// CreateProgramHandler handles CreateProgram.
type CreateProgramHandler struct{ core core }

// NewCreateProgramHandler returns the handler; it panics on a nil store.
func NewCreateProgramHandler(store EventStore, opts ...Option) CreateProgramHandler {
	return CreateProgramHandler{core: newCore(store, opts)}
}

// Handle validates the program and starts its stream with ProgramCreated (expected:
// no stream). The new id is a UUIDv7. With an Idempotency-Key the event id is derived
// from the key, so a retried request's append is a no-op that returns the original
// AppendResult: its StreamID names the program created first, and that program's id
// is reported, with Created still true (the same response as the first time).
//
// An If-Match (ExpectedVersion) other than 0 is ErrPreconditionFailed: the program
// does not exist yet, so no other version can match.
func (h CreateProgramHandler) Handle(ctx context.Context, cmd CreateProgram) (Result, error) {
	if ev := cmd.Meta.ExpectedVersion; ev != nil && *ev != events.ExpectNoStream {
		return Result{}, fmt.Errorf("create program: a new program has no version %d: %w", *ev, ErrPreconditionFailed)
	}
	for attempt := 0; ; attempt++ {
		id, err := newID()
		if err != nil {
			return Result{}, err
		}
		p, err := program.Create(id, program.NewProgram{
			Title:       cmd.Title,
			Description: cmd.Description,
			Category:    cmd.Category,
			Language:    cmd.Language,
			Tags:        cmd.Tags,
			ExternalID:  cmd.ExternalID,
		})
		if err != nil {
			return Result{}, err
		}
		envs, err := h.core.envelopes(cmd.Meta, p.Pending(), 0)
		if err != nil {
			return Result{}, err
		}
		streamID := events.ProgramStreamID(id)
		res, err := h.core.store.Append(ctx, streamID, events.ExpectNoStream, envs)
		if errors.Is(err, events.ErrVersionConflict) {
			// Only a UUIDv7 collision gets here; a new id settles it.
			retry, cerr := conflict(cmd.Meta, streamID, attempt, err)
			if retry {
				continue
			}
			return Result{}, cerr
		}
		if err != nil {
			return Result{}, fmt.Errorf("create program: append to %s: %w", streamID, err)
		}
		if res.StreamID != "" && res.StreamID != streamID {
			orig, ok := strings.CutPrefix(res.StreamID, events.ProgramStreamID(""))
			if !ok || !validID(orig) {
				return Result{}, fmt.Errorf("create program: events of this command are stored in %s: %w", res.StreamID, ErrIdempotencyKeyReused)
			}
			id, streamID = orig, res.StreamID
		}
		return Result{ID: id, StreamID: streamID, Version: res.LastVersion, Position: res.Position, Changed: true, Created: true}, nil
	}
}
