package accounts

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// AccountByIDHandler is GET /v1/auth/me: the account a token's subject names.
type AccountByIDHandler struct{ core *core }

// Handle returns the account with id; an id that is not a UUID (a token minted by
// `mediamesh token` for a subject without an account) is ErrNotFound.
func (h AccountByIDHandler) Handle(ctx context.Context, id string) (Account, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Account{}, fmt.Errorf("account %q: %w", id, ErrNotFound)
	}
	a, err := h.core.store.AccountByID(ctx, id)
	if err != nil {
		return Account{}, fmt.Errorf("account %s: %w", id, err)
	}
	return a, nil
}
