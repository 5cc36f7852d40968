package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/command/accounts"
)

// AccountStore is the PostgreSQL adapter of accounts.AccountStore, on the tables of
// migration 00008 (accounts, refresh_token_families, refresh_tokens).
//
// Concurrency: a duplicate email is refused by the unique index (never by a
// check-then-insert), and every operation on a refresh token family locks the
// family's row first, so a rotation, a reuse and a logout of one family happen one
// after another whatever the interleaving of their requests.
type AccountStore struct {
	pool *pgxpool.Pool
}

var _ accounts.AccountStore = (*AccountStore)(nil)

// NewAccountStore returns a store on pool; it panics on a nil pool.
func NewAccountStore(pool *pgxpool.Pool) *AccountStore {
	if pool == nil {
		panic("postgres: nil pool")
	}
	return &AccountStore{pool: pool}
}

const accountColumns = `id::text, email, name, role, password_hash, created_at, updated_at`

func scanAccount(row pgx.Row) (accounts.Account, error) {
	var a accounts.Account
	err := row.Scan(&a.ID, &a.Email, &a.Name, &a.Role, &a.PasswordHash, &a.CreatedAt, &a.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return accounts.Account{}, accounts.ErrNotFound
	}
	if err != nil {
		return accounts.Account{}, err
	}
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return a, nil
}

// CreateAccount inserts a; a duplicate email is accounts.ErrEmailTaken.
func (s *AccountStore) CreateAccount(ctx context.Context, a accounts.Account) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO accounts (id, email, name, role, password_hash, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)`, a.ID, a.Email, a.Name, a.Role, a.PasswordHash, a.CreatedAt, a.UpdatedAt)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "accounts_email_key" { // unique_violation
		return accounts.ErrEmailTaken
	}
	if err != nil {
		return fmt.Errorf("insert account: %w", err)
	}
	return nil
}

// AccountByEmail returns the account with the (normalized) email.
func (s *AccountStore) AccountByEmail(ctx context.Context, email string) (accounts.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE email = $1`, email))
	if err != nil && !errors.Is(err, accounts.ErrNotFound) {
		return a, fmt.Errorf("select account by email: %w", err)
	}
	return a, err
}

// AccountByID returns the account with id; an id that is not a UUID names none.
func (s *AccountStore) AccountByID(ctx context.Context, id string) (accounts.Account, error) {
	if _, err := uuid.Parse(id); err != nil {
		return accounts.Account{}, accounts.ErrNotFound
	}
	a, err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1`, id))
	if err != nil && !errors.Is(err, accounts.ErrNotFound) {
		return a, fmt.Errorf("select account by id: %w", err)
	}
	return a, err
}

// SetRole changes the role of the account with email.
func (s *AccountStore) SetRole(ctx context.Context, email, role string, now time.Time) (accounts.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, `UPDATE accounts SET role = $2, updated_at = $3 WHERE email = $1
RETURNING `+accountColumns, email, role, now))
	if err != nil && !errors.Is(err, accounts.ErrNotFound) {
		return a, fmt.Errorf("update account role: %w", err)
	}
	return a, err
}

// CreateRefreshToken stores a new family with its first token, in one transaction.
func (s *AccountStore) CreateRefreshToken(ctx context.Context, t accounts.RefreshToken) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO refresh_token_families (id, account_id, created_at) VALUES ($1, $2, $3)`,
			t.FamilyID, t.AccountID, t.IssuedAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)`,
			t.Hash, t.FamilyID, t.IssuedAt, t.ExpiresAt)
		return err
	})
	if err != nil {
		return fmt.Errorf("insert refresh token: %w", err)
	}
	return nil
}

// RotateRefreshToken spends the presented token and stores next in its family; see
// accounts.AccountStore. Reading the token's state only after the family's row is
// locked is what makes two concurrent rotations of one token see each other: the
// second reads the token as the first left it (spent), not as it was.
func (s *AccountStore) RotateRefreshToken(ctx context.Context, presented []byte, next accounts.RefreshToken, now time.Time) (accounts.RefreshToken, error) {
	var out accounts.RefreshToken
	var reused bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var family string
		err := tx.QueryRow(ctx, `SELECT family_id::text FROM refresh_tokens WHERE token_hash = $1`, presented).Scan(&family)
		if errors.Is(err, pgx.ErrNoRows) {
			return accounts.ErrInvalidRefreshToken
		}
		if err != nil {
			return err
		}
		var (
			accountID string
			revoked   bool
		)
		if err := tx.QueryRow(ctx, `SELECT account_id::text, revoked_at IS NOT NULL FROM refresh_token_families WHERE id = $1 FOR UPDATE`,
			family).Scan(&accountID, &revoked); err != nil {
			return err
		}
		if revoked {
			return accounts.ErrInvalidRefreshToken
		}
		var (
			expiresAt time.Time
			spent     bool
		)
		if err := tx.QueryRow(ctx, `SELECT expires_at, spent_at IS NOT NULL FROM refresh_tokens WHERE token_hash = $1`,
			presented).Scan(&expiresAt, &spent); err != nil {
			return err
		}
		if spent {
			// Committed (not rolled back) with the error reported after the commit.
			reused = true
			_, err := tx.Exec(ctx, `UPDATE refresh_token_families SET revoked_at = $2 WHERE id = $1`, family, now)
			return err
		}
		if !now.Before(expiresAt) {
			return accounts.ErrInvalidRefreshToken
		}
		if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET spent_at = $2 WHERE token_hash = $1`, presented, now); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)`,
			next.Hash, family, next.IssuedAt, next.ExpiresAt); err != nil {
			return err
		}
		out = next
		out.FamilyID, out.AccountID = family, accountID
		return nil
	})
	switch {
	case errors.Is(err, accounts.ErrInvalidRefreshToken):
		return accounts.RefreshToken{}, err
	case err != nil:
		return accounts.RefreshToken{}, fmt.Errorf("rotate refresh token: %w", err)
	case reused:
		return accounts.RefreshToken{}, accounts.ErrRefreshTokenReused
	}
	return out, nil
}

// RevokeRefreshFamily revokes the family of the presented token if accountID owns
// it. The UPDATE locks the family's row, so it waits for a rotation in progress and
// then revokes the family with the token that rotation added.
func (s *AccountStore) RevokeRefreshFamily(ctx context.Context, presented []byte, accountID string, now time.Time) error {
	if _, err := uuid.Parse(accountID); err != nil {
		return nil // a subject without an account owns no family
	}
	_, err := s.pool.Exec(ctx, `UPDATE refresh_token_families f SET revoked_at = $3
  FROM refresh_tokens t
 WHERE t.token_hash = $1 AND f.id = t.family_id AND f.account_id = $2 AND f.revoked_at IS NULL`, presented, accountID, now)
	if err != nil {
		return fmt.Errorf("revoke refresh token family: %w", err)
	}
	return nil
}

// DeleteExpiredRefreshTokens deletes up to limit families whose every token expired
// before olderThan, with their tokens, and reports how many it deleted. Keeping a
// family until then is what lets a spent token's reuse be detected for as long as
// any token of the family could still be used. The composition root calls it
// periodically (like the idempotency sweep), e.g. with olderThan = now.
func (s *AccountStore) DeleteExpiredRefreshTokens(ctx context.Context, olderThan time.Time, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM refresh_token_families WHERE id IN (
  SELECT f.id FROM refresh_token_families f
   WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.id AND t.expires_at >= $1)
   LIMIT $2)`, olderThan, limit)
	if err != nil {
		return 0, fmt.Errorf("delete expired refresh tokens: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
