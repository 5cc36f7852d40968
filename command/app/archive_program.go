package app

import (
	"context"

	"github.com/mediamesh/mediamesh/command/program"
)

// ArchiveProgram is POST /v1/programs/{id}/archive.
type ArchiveProgram struct {
	Meta      Meta
	ProgramID string
}

// ArchiveProgramHandler handles ArchiveProgram.
type ArchiveProgramHandler struct{ core core }

// NewArchiveProgramHandler returns the handler; it panics on a nil store.
func NewArchiveProgramHandler(store EventStore, opts ...Option) ArchiveProgramHandler {
	return ArchiveProgramHandler{core: newCore(store, opts)}
}

// Handle archives the program from any state; an archived one is left as it is
// (Changed false).
func (h ArchiveProgramHandler) Handle(ctx context.Context, cmd ArchiveProgram) (Result, error) {
	res, err := h.core.changeProgram(ctx, cmd.Meta, cmd.ProgramID, (*program.Program).Archive)
	if err != nil {
		return Result{}, err
	}
	res.ID = cmd.ProgramID
	return res, nil
}
