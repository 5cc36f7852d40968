package accounts

import (
	"context"
	"errors"
	"fmt"
)

// Refresh is POST /v1/auth/refresh.
type Refresh struct {
	RefreshToken string
}

// RefreshHandler handles Refresh.
type RefreshHandler struct{ core *core }

// Handle spends the presented refresh token and issues the next one of its family
// with a new access token carrying the account's current role. An unknown,
// expired, spent or revoked token is ErrInvalidRefreshToken; a spent one also
// revokes its family (ErrRefreshTokenReused, which wraps ErrInvalidRefreshToken).
// An empty token is a *ValidationError.
func (h RefreshHandler) Handle(ctx context.Context, cmd Refresh) (Tokens, error) {
	if cmd.RefreshToken == "" {
		return Tokens{}, &ValidationError{Fields: []FieldError{{Field: "refresh_token", Message: "is required"}}}
	}
	if !wellFormedRefreshToken(cmd.RefreshToken) {
		return Tokens{}, ErrInvalidRefreshToken
	}
	next, nextHash, err := newRefreshToken()
	if err != nil {
		return Tokens{}, err
	}
	now := h.core.now()
	rt, err := h.core.store.RotateRefreshToken(ctx, HashRefreshToken(cmd.RefreshToken),
		RefreshToken{Hash: nextHash, IssuedAt: now, ExpiresAt: now.Add(h.core.cfg.RefreshTokenTTL)}, now)
	if err != nil {
		if errors.Is(err, ErrInvalidRefreshToken) {
			return Tokens{}, err
		}
		return Tokens{}, fmt.Errorf("refresh: %w", err)
	}
	a, err := h.core.store.AccountByID(ctx, rt.AccountID)
	if err != nil {
		// The account was deleted under a live session.
		if errors.Is(err, ErrNotFound) {
			return Tokens{}, ErrInvalidRefreshToken
		}
		return Tokens{}, fmt.Errorf("refresh: %w", err)
	}
	return h.core.issue(a, next)
}
