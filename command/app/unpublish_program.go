package app

import (
	"context"

	"github.com/mediamesh/mediamesh/command/program"
)

// UnpublishProgram is POST /v1/programs/{id}/unpublish.
type UnpublishProgram struct {
	Meta      Meta
	ProgramID string
}

// UnpublishProgramHandler handles UnpublishProgram.
type UnpublishProgramHandler struct{ core core }

// NewUnpublishProgramHandler returns the handler; it panics on a nil store.
func NewUnpublishProgramHandler(store EventStore, opts ...Option) UnpublishProgramHandler {
	return UnpublishProgramHandler{core: newCore(store, opts)}
}

// Handle unpublishes a published program; an unpublished one is left as it is
// (Changed false); a draft or archived one is program.ErrInvalidState.
func (h UnpublishProgramHandler) Handle(ctx context.Context, cmd UnpublishProgram) (Result, error) {
	res, err := h.core.changeProgram(ctx, cmd.Meta, cmd.ProgramID, (*program.Program).Unpublish)
	if err != nil {
		return Result{}, err
	}
	res.ID = cmd.ProgramID
	return res, nil
}
