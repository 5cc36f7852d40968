package accounts

import (
	"context"
	"fmt"
)

// SetRole is `mediamesh users set-role`: an operator changes an account's role.
// Access tokens already issued keep their role until they expire (at most the
// access token lifetime); the next refresh carries the new role.
type SetRole struct {
	Email string
	Role  string
}

// SetRoleHandler handles SetRole.
type SetRoleHandler struct{ core *core }

// Handle validates the role and email and changes the role; an unknown email is
// ErrNotFound.
func (h SetRoleHandler) Handle(ctx context.Context, cmd SetRole) (Account, error) {
	var fe fieldErrors
	email := NormalizeEmail(cmd.Email)
	checkEmail(&fe, email)
	checkRole(&fe, cmd.Role)
	if err := fe.err(); err != nil {
		return Account{}, err
	}
	a, err := h.core.store.SetRole(ctx, email, cmd.Role, h.core.now())
	if err != nil {
		return Account{}, fmt.Errorf("set role of %s: %w", email, err)
	}
	return a, nil
}
