package app

import (
	"context"

	"github.com/mediamesh/mediamesh/command/program"
)

// UpdateProgram sets some of a program's fields (PATCH /v1/programs/{id}); a nil
// field is left as it is.
type UpdateProgram struct {
	Meta                                   Meta
	ProgramID                              string
	Title, Description, Category, Language *string
	Tags                                   *[]string
}

// UpdateProgramHandler handles UpdateProgram.
type UpdateProgramHandler struct{ core core }

// NewUpdateProgramHandler returns the handler; it panics on a nil store.
func NewUpdateProgramHandler(store EventStore, opts ...Option) UpdateProgramHandler {
	return UpdateProgramHandler{core: newCore(store, opts)}
}

// Handle records a ProgramUpdated with the fields that changed; values equal to the
// current ones change nothing (Changed false, nothing appended).
func (h UpdateProgramHandler) Handle(ctx context.Context, cmd UpdateProgram) (Result, error) {
	res, err := h.core.changeProgram(ctx, cmd.Meta, cmd.ProgramID, func(p *program.Program) error {
		return p.Update(program.ProgramChanges{
			Title:       cmd.Title,
			Description: cmd.Description,
			Category:    cmd.Category,
			Language:    cmd.Language,
			Tags:        cmd.Tags,
		})
	})
	if err != nil {
		return Result{}, err
	}
	res.ID = cmd.ProgramID
	return res, nil
}
