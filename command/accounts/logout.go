package accounts

import (
	"context"
	"fmt"
)

// Logout is POST /v1/auth/logout: the caller (AccountID, from the bearer token)
// ends the session its refresh token belongs to.
type Logout struct {
	AccountID    string
	RefreshToken string
}

// LogoutHandler handles Logout.
type LogoutHandler struct{ core *core }

// Handle revokes the family of the presented refresh token when it belongs to the
// caller. Like OAuth token revocation (RFC 7009 2.2), an unknown, expired or
// foreign token is not an error: logging out twice succeeds, and the answer tells
// nothing about other people's tokens. Access tokens already issued stay valid until
// they expire (at most the access token lifetime). An empty token is a
// *ValidationError.
func (h LogoutHandler) Handle(ctx context.Context, cmd Logout) error {
	if cmd.RefreshToken == "" {
		return &ValidationError{Fields: []FieldError{{Field: "refresh_token", Message: "is required"}}}
	}
	if !wellFormedRefreshToken(cmd.RefreshToken) || cmd.AccountID == "" {
		return nil
	}
	if err := h.core.store.RevokeRefreshFamily(ctx, HashRefreshToken(cmd.RefreshToken), cmd.AccountID, h.core.now()); err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	return nil
}
