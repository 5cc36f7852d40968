package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/accounts"
	"github.com/mediamesh/mediamesh/command/accounts/accountstest"
	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

func TestAccountStoreConforms(t *testing.T) {
	t.Parallel()
	accountstest.Run(t, func(t *testing.T) accounts.AccountStore {
		pool, _ := pgtest.NewDB(t)
		return postgres.NewAccountStore(pool)
	})
}

// TestAccountStoreDatabaseRules checks what the schema itself refuses, whatever the
// code above it does: an email that is not normalized, an unknown role.
func TestAccountStoreDatabaseRules(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	s := postgres.NewAccountStore(pool)
	ctx := ctxT(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	for name, a := range map[string]accounts.Account{
		"upper-case email": {Email: "Ann@example.com", Name: "Ann", Role: accounts.RoleViewer},
		"padded email":     {Email: " ann@example.com", Name: "Ann", Role: accounts.RoleViewer},
		"unknown role":     {Email: "ann@example.com", Name: "Ann", Role: "root"},
		"empty name":       {Email: "ann@example.com", Name: "", Role: accounts.RoleViewer},
	} {
		a.ID, a.PasswordHash, a.CreatedAt, a.UpdatedAt = uuid.NewString(), []byte("h"), now, now
		if err := s.CreateAccount(ctx, a); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	// Lookups by something that is not a UUID find nothing instead of failing.
	if _, err := s.AccountByID(ctx, "not-a-uuid"); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("non-uuid id: err = %v", err)
	}
	if err := s.RevokeRefreshFamily(ctx, make([]byte, 32), "cli-subject", now); err != nil {
		t.Errorf("non-uuid owner: err = %v", err)
	}
}

func TestDeleteExpiredRefreshTokens(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	s := postgres.NewAccountStore(pool)
	ctx := ctxT(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	a := accounts.Account{ID: uuid.NewString(), Email: "ann@example.com", Name: "Ann", Role: accounts.RoleViewer,
		PasswordHash: []byte("h"), CreatedAt: now, UpdatedAt: now}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	hash := func(b byte) []byte { h := make([]byte, 32); h[0] = b; return h }
	// Family 1 expired; family 2 has a spent expired token and a live one.
	if err := s.CreateRefreshToken(ctx, accounts.RefreshToken{Hash: hash(1), FamilyID: uuid.NewString(), AccountID: a.ID,
		IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRefreshToken(ctx, accounts.RefreshToken{Hash: hash(2), FamilyID: uuid.NewString(), AccountID: a.ID,
		IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateRefreshToken(ctx, hash(2), accounts.RefreshToken{Hash: hash(3), IssuedAt: now, ExpiresAt: now.Add(2 * time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteExpiredRefreshTokens(ctx, now, 100)
	if err != nil || n != 1 {
		t.Fatalf("deleted %d families, %v; want 1", n, err)
	}
	// The live family keeps its spent token, so its reuse is still detected.
	if _, err := s.RotateRefreshToken(ctx, hash(2), accounts.RefreshToken{Hash: hash(4), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, now); !errors.Is(err, accounts.ErrRefreshTokenReused) {
		t.Fatalf("reuse after the sweep: err = %v", err)
	}
	var left int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM refresh_tokens`).Scan(&left); err != nil || left != 2 {
		t.Fatalf("%d tokens left, %v; want 2", left, err)
	}
}
