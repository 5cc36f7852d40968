package app

import (
	"context"

	"github.com/mediamesh/mediamesh/command/program"
)

// PublishProgram is POST /v1/programs/{id}/publish.
type PublishProgram struct {
	Meta      Meta
	ProgramID string
}

// PublishProgramHandler handles PublishProgram.
type PublishProgramHandler struct{ core core }

// NewPublishProgramHandler returns the handler; it panics on a nil store.
func NewPublishProgramHandler(store EventStore, opts ...Option) PublishProgramHandler {
	return PublishProgramHandler{core: newCore(store, opts)}
}

// Handle publishes a draft or unpublished program; a published one is left as it is
// (Changed false); an archived one is program.ErrInvalidState.
func (h PublishProgramHandler) Handle(ctx context.Context, cmd PublishProgram) (Result, error) {
	res, err := h.core.changeProgram(ctx, cmd.Meta, cmd.ProgramID, (*program.Program).Publish)
	if err != nil {
		return Result{}, err
	}
	res.ID = cmd.ProgramID
	return res, nil
}
