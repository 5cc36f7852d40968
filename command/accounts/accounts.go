// Package accounts holds the use cases of user accounts: register, login, refresh,
// logout, the caller's own account, and the operator's create-user and set-role.
//
// Accounts are not event-sourced: they are not catalog data, nothing projects them,
// and a password hash or a refresh token has no business in an append-only log that
// is replayed into read models. They live in ordinary PostgreSQL tables behind the
// AccountStore port declared here (adapter: infra/postgres/accounts.go).
//
// Decisions:
//   - Emails are normalized (trimmed, lower-cased) before they are validated, stored
//     or looked up, so "Ann@Example.com " and "ann@example.com" are one account; the
//     store's unique index on the normalized email makes a duplicate registration a
//     race-free ErrEmailTaken.
//   - Passwords are 10 to 72 bytes (bcrypt reads no more than 72), hashed with bcrypt
//     at a configurable cost (10–12). Login runs exactly one bcrypt comparison at that
//     cost whether or not the email exists (against a dummy hash when it does not),
//     so the answer and its timing say nothing about which emails have accounts.
//   - Access tokens are short-lived (15 min) signed JWTs minted through the
//     AccessTokens port; they are never revoked, they expire. Refresh tokens are
//     opaque random strings (32 bytes, base64url) stored only as SHA-256 hashes,
//     grouped in families (one per login). Every refresh spends the presented token
//     and issues the next one of its family; presenting a spent token again is taken
//     as theft and revokes the whole family (RFC 6819 5.2.2.3, OAuth 2.1 "refresh
//     token rotation"). A role change therefore reaches a session at its next refresh.
package accounts

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Roles, in rank order: each can do what the ones before it can (API.md "Auth").
const (
	RoleViewer = "viewer"
	RoleEditor = "editor"
	RoleAdmin  = "admin"
)

// ValidRole reports whether role is one of the three roles.
func ValidRole(role string) bool {
	return role == RoleViewer || role == RoleEditor || role == RoleAdmin
}

// Account is a user account. PasswordHash is a bcrypt hash; it never leaves the
// command side (the api renders only id, email, name and role).
type Account struct {
	ID           string
	Email        string
	Name         string
	Role         string
	PasswordHash []byte
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// RefreshToken is the stored form of a refresh token: the SHA-256 of the token
// (the token itself is never stored), its family and owner, and its lifetime.
type RefreshToken struct {
	Hash      []byte
	FamilyID  string
	AccountID string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Tokens is what login and refresh hand out (API.md: access_token, refresh_token,
// token_type "Bearer", expires_in).
type Tokens struct {
	AccessToken  string
	RefreshToken string
	TokenType    string
	// ExpiresIn is the access token's lifetime.
	ExpiresIn time.Duration
}

// Errors of the use cases; the api maps each to one HTTP status.
var (
	// ErrEmailTaken: another account has this (normalized) email (409).
	ErrEmailTaken = errors.New("an account with this email already exists")
	// ErrInvalidCredentials: unknown email or wrong password, deliberately not told
	// apart (401).
	ErrInvalidCredentials = errors.New("wrong email or password")
	// ErrInvalidRefreshToken: the refresh token is unknown, expired, spent or revoked
	// (401).
	ErrInvalidRefreshToken = errors.New("the refresh token is invalid or expired")
	// ErrRefreshTokenReused: a spent refresh token was presented again; its family
	// has been revoked. It wraps ErrInvalidRefreshToken, so the api answers both alike.
	ErrRefreshTokenReused = reusedError{}
	// ErrNotFound: no account with this id or email (404).
	ErrNotFound = errors.New("account not found")
)

type reusedError struct{}

func (reusedError) Error() string {
	return "the refresh token was already used; its session has been revoked"
}
func (reusedError) Unwrap() error { return ErrInvalidRefreshToken }

// FieldError is one invalid field: its JSON (snake_case) name and what is wrong.
type FieldError struct {
	Field   string
	Message string
}

// ValidationError lists every invalid field of a request at once (400). Check for
// it with errors.As.
type ValidationError struct {
	Fields []FieldError
}

// Error joins the field errors: "invalid input: email: ...; password: ...".
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid input")
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(f.Field + ": " + f.Message)
	}
	return b.String()
}

// AccountStore is the port to the accounts' storage. Implementations must make
// every method safe for concurrent use and every multi-row change atomic.
type AccountStore interface {
	// CreateAccount stores a new account; a duplicate email is ErrEmailTaken, decided
	// by a unique index so that concurrent registrations cannot both succeed.
	CreateAccount(ctx context.Context, a Account) error
	// AccountByEmail and AccountByID return ErrNotFound when there is no such account.
	AccountByEmail(ctx context.Context, email string) (Account, error)
	AccountByID(ctx context.Context, id string) (Account, error)
	// SetRole changes the role of the account with email at now and returns it
	// (ErrNotFound when there is none).
	SetRole(ctx context.Context, email, role string, now time.Time) (Account, error)

	// CreateRefreshToken starts a new family (t.FamilyID) with its first token.
	CreateRefreshToken(ctx context.Context, t RefreshToken) error
	// RotateRefreshToken spends the token whose hash is presented and stores next in
	// the same family, atomically, and returns next completed with its family and
	// account. When the presented token is unknown, expired at now, or its family is
	// revoked, it returns ErrInvalidRefreshToken; when it was already spent, it
	// revokes its family and returns ErrRefreshTokenReused. Operations on one family
	// are serialized, so of two concurrent rotations of the same token exactly one
	// succeeds (and the other revokes the family).
	RotateRefreshToken(ctx context.Context, presented []byte, next RefreshToken, now time.Time) (RefreshToken, error)
	// RevokeRefreshFamily revokes the family of the token whose hash is presented,
	// provided it belongs to accountID. An unknown token, or one of another account,
	// changes nothing and is not an error (logout reveals nothing about tokens).
	RevokeRefreshFamily(ctx context.Context, presented []byte, accountID string, now time.Time) error
}

// AccessTokens mints access tokens (jwtkeys.Signer implements it).
type AccessTokens interface {
	Mint(subject, role string, ttl time.Duration) (string, error)
}
