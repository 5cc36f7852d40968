package accounts

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
)

// Login is POST /v1/auth/login.
type Login struct {
	Email    string
	Password string
}

// LoginHandler handles Login.
type LoginHandler struct{ core *core }

// Handle checks the credentials and starts a session: a new refresh token family
// and an access token. A missing field is a *ValidationError; anything else wrong
// is ErrInvalidCredentials, after the same work either way: one account lookup and
// one bcrypt comparison at the configured cost (against a dummy hash when the email
// has no account), so neither the answer nor its time tells whether an email is
// registered. The email's format is not validated here for the same reason.
//
// A password longer than 72 bytes never matches: bcrypt would compare only its
// first 72 bytes, so a longer guess could otherwise pass for a stored password.
func (h LoginHandler) Handle(ctx context.Context, cmd Login) (Tokens, error) {
	var fe fieldErrors
	email := NormalizeEmail(cmd.Email)
	if email == "" {
		fe.add("email", "is required")
	}
	if cmd.Password == "" {
		fe.add("password", "is required")
	}
	if err := fe.err(); err != nil {
		return Tokens{}, err
	}
	hash, found := h.core.dummyHash, false
	var a Account
	if len(email) <= MaxEmailLen {
		var err error
		a, err = h.core.store.AccountByEmail(ctx, email)
		switch {
		case err == nil:
			hash, found = a.PasswordHash, true
		case !errors.Is(err, ErrNotFound):
			return Tokens{}, fmt.Errorf("login: %w", err)
		}
	}
	pw := []byte(cmd.Password)
	tooLong := len(pw) > MaxPasswordBytes
	if tooLong {
		pw = pw[:MaxPasswordBytes]
	}
	mismatch := bcrypt.CompareHashAndPassword(hash, pw) != nil
	if !found || tooLong || mismatch {
		return Tokens{}, ErrInvalidCredentials
	}

	refresh, refreshHash, err := newRefreshToken()
	if err != nil {
		return Tokens{}, err
	}
	family, err := uuid.NewV7()
	if err != nil {
		return Tokens{}, fmt.Errorf("login: new family id: %w", err)
	}
	now := h.core.now()
	if err := h.core.store.CreateRefreshToken(ctx, RefreshToken{Hash: refreshHash, FamilyID: family.String(),
		AccountID: a.ID, IssuedAt: now, ExpiresAt: now.Add(h.core.cfg.RefreshTokenTTL)}); err != nil {
		return Tokens{}, fmt.Errorf("login: %w", err)
	}
	return h.core.issue(a, refresh)
}
