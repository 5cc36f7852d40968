package accounts

import (
	"context"
	"fmt"
)

// Register is POST /v1/auth/register: anyone may create a viewer account.
type Register struct {
	Email    string
	Password string
	Name     string
}

// RegisterHandler handles Register.
type RegisterHandler struct{ core *core }

// Handle validates the fields (every invalid one is listed in a *ValidationError),
// hashes the password and stores the account with the viewer role. A taken email is
// ErrEmailTaken.
func (h RegisterHandler) Handle(ctx context.Context, cmd Register) (Account, error) {
	a, err := h.core.newAccount(cmd.Email, cmd.Password, cmd.Name, RoleViewer)
	if err != nil {
		return Account{}, err
	}
	if err := h.core.store.CreateAccount(ctx, a); err != nil {
		return Account{}, fmt.Errorf("register %s: %w", a.Email, err)
	}
	return a, nil
}
