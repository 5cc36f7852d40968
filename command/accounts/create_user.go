package accounts

import (
	"context"
	"fmt"
	"strings"
)

// CreateUser is `mediamesh users create`: an operator creates an account with any
// role (this is how the first admin comes to exist).
type CreateUser struct {
	Email    string
	Password string
	// Name is optional here: empty means the email's local part.
	Name string
	Role string
}

// CreateUserHandler handles CreateUser.
type CreateUserHandler struct{ core *core }

// Handle validates and stores the account like Register, with cmd.Role.
func (h CreateUserHandler) Handle(ctx context.Context, cmd CreateUser) (Account, error) {
	name := cmd.Name
	if strings.TrimSpace(name) == "" {
		name, _, _ = strings.Cut(NormalizeEmail(cmd.Email), "@")
	}
	a, err := h.core.newAccount(cmd.Email, cmd.Password, name, cmd.Role)
	if err != nil {
		return Account{}, err
	}
	if err := h.core.store.CreateAccount(ctx, a); err != nil {
		return Account{}, fmt.Errorf("create user %s: %w", a.Email, err)
	}
	return a, nil
}
