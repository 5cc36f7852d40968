// Package accountstest is the conformance suite of the accounts.AccountStore port:
// every adapter (PostgreSQL, and the in-memory store of the use-case tests) runs
// the same tests, so the use cases can rely on one contract.
package accountstest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/accounts"
)

// Run runs every test of the suite; newStore returns an empty store for one test.
func Run(t *testing.T, newStore func(t *testing.T) accounts.AccountStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s accounts.AccountStore)
	}{
		{"CreateAndRead", testCreateAndRead},
		{"DuplicateEmail", testDuplicateEmail},
		{"ConcurrentDuplicateEmail", testConcurrentDuplicateEmail},
		{"SetRole", testSetRole},
		{"RotateRefreshToken", testRotate},
		{"ReuseRevokesFamily", testReuseRevokesFamily},
		{"ExpiredAndUnknownTokens", testExpiredAndUnknown},
		{"ConcurrentRotation", testConcurrentRotation},
		{"RevokeFamily", testRevokeFamily},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// base is a fixed instant; stores keep microseconds (PostgreSQL timestamptz).
var base = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newAccount(t *testing.T, email string) accounts.Account {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return accounts.Account{ID: id.String(), Email: email, Name: "Name of " + email, Role: accounts.RoleViewer,
		PasswordHash: []byte("$2a$10$abcdefghijklmnopqrstuuKkVQkHf3mD0Oqz8y2Q4B2Ql3vJzq6wK"), CreatedAt: base, UpdatedAt: base}
}

func mustCreate(t *testing.T, s accounts.AccountStore, email string) accounts.Account {
	t.Helper()
	a := newAccount(t, email)
	if err := s.CreateAccount(context.Background(), a); err != nil {
		t.Fatalf("create %s: %v", email, err)
	}
	return a
}

func randomHash(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// startFamily stores the first token of a new family of a and returns its hash.
func startFamily(t *testing.T, s accounts.AccountStore, a accounts.Account) ([]byte, string) {
	t.Helper()
	h, fam := randomHash(t), uuid.NewString()
	if err := s.CreateRefreshToken(context.Background(), accounts.RefreshToken{Hash: h, FamilyID: fam, AccountID: a.ID,
		IssuedAt: base, ExpiresAt: base.Add(time.Hour)}); err != nil {
		t.Fatalf("create refresh token: %v", err)
	}
	return h, fam
}

func rotate(s accounts.AccountStore, presented, next []byte, now time.Time) (accounts.RefreshToken, error) {
	return s.RotateRefreshToken(context.Background(), presented, accounts.RefreshToken{Hash: next, IssuedAt: now,
		ExpiresAt: now.Add(time.Hour)}, now)
}

func testCreateAndRead(t *testing.T, s accounts.AccountStore) {
	ctx := context.Background()
	a := mustCreate(t, s, "ann@example.com")
	for name, get := range map[string]func() (accounts.Account, error){
		"by email": func() (accounts.Account, error) { return s.AccountByEmail(ctx, "ann@example.com") },
		"by id":    func() (accounts.Account, error) { return s.AccountByID(ctx, a.ID) },
	} {
		got, err := get()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.ID != a.ID || got.Email != a.Email || got.Name != a.Name || got.Role != a.Role ||
			string(got.PasswordHash) != string(a.PasswordHash) || !got.CreatedAt.Equal(a.CreatedAt) || !got.UpdatedAt.Equal(a.UpdatedAt) {
			t.Fatalf("%s: got %+v, want %+v", name, got, a)
		}
	}
	if _, err := s.AccountByEmail(ctx, "bob@example.com"); !errors.Is(err, accounts.ErrNotFound) {
		t.Fatalf("unknown email: err = %v", err)
	}
	if _, err := s.AccountByID(ctx, uuid.NewString()); !errors.Is(err, accounts.ErrNotFound) {
		t.Fatalf("unknown id: err = %v", err)
	}
}

func testDuplicateEmail(t *testing.T, s accounts.AccountStore) {
	first := mustCreate(t, s, "ann@example.com")
	dup := newAccount(t, "ann@example.com")
	if err := s.CreateAccount(context.Background(), dup); !errors.Is(err, accounts.ErrEmailTaken) {
		t.Fatalf("duplicate: err = %v, want ErrEmailTaken", err)
	}
	got, err := s.AccountByEmail(context.Background(), "ann@example.com")
	if err != nil || got.ID != first.ID {
		t.Fatalf("the first account was replaced: %+v, %v", got, err)
	}
}

func testConcurrentDuplicateEmail(t *testing.T, s accounts.AccountStore) {
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = s.CreateAccount(context.Background(), newAccount(t, "race@example.com")) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, accounts.ErrEmailTaken):
			t.Fatalf("concurrent create: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent registrations of one email succeeded, want 1", ok)
	}
}

func testSetRole(t *testing.T, s accounts.AccountStore) {
	ctx := context.Background()
	a := mustCreate(t, s, "ann@example.com")
	later := base.Add(time.Minute)
	got, err := s.SetRole(ctx, "ann@example.com", accounts.RoleAdmin, later)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != a.ID || got.Role != accounts.RoleAdmin || !got.UpdatedAt.Equal(later) || !got.CreatedAt.Equal(base) {
		t.Fatalf("set role returned %+v", got)
	}
	if again, _ := s.AccountByID(ctx, a.ID); again.Role != accounts.RoleAdmin {
		t.Fatalf("role not stored: %+v", again)
	}
	if _, err := s.SetRole(ctx, "nobody@example.com", accounts.RoleAdmin, later); !errors.Is(err, accounts.ErrNotFound) {
		t.Fatalf("unknown email: err = %v", err)
	}
}

func testRotate(t *testing.T, s accounts.AccountStore) {
	a := mustCreate(t, s, "ann@example.com")
	h1, fam := startFamily(t, s, a)
	h2, h3 := randomHash(t), randomHash(t)
	now := base.Add(time.Minute)
	got, err := rotate(s, h1, h2, now)
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if got.FamilyID != fam || got.AccountID != a.ID || string(got.Hash) != string(h2) ||
		!got.IssuedAt.Equal(now) || !got.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("rotate returned %+v", got)
	}
	// The next token rotates in turn; the chain goes on.
	if _, err := rotate(s, h2, h3, now.Add(time.Minute)); err != nil {
		t.Fatalf("rotate the next token: %v", err)
	}
}

func testReuseRevokesFamily(t *testing.T, s accounts.AccountStore) {
	a := mustCreate(t, s, "ann@example.com")
	h1, _ := startFamily(t, s, a)
	other, _ := startFamily(t, s, a) // another session of the same account
	h2 := randomHash(t)
	now := base.Add(time.Minute)
	if _, err := rotate(s, h1, h2, now); err != nil {
		t.Fatal(err)
	}
	_, err := rotate(s, h1, randomHash(t), now)
	if !errors.Is(err, accounts.ErrRefreshTokenReused) || !errors.Is(err, accounts.ErrInvalidRefreshToken) {
		t.Fatalf("reuse of a spent token: err = %v, want ErrRefreshTokenReused", err)
	}
	// The whole family is revoked: the newer token stops working too.
	if _, err := rotate(s, h2, randomHash(t), now); !errors.Is(err, accounts.ErrInvalidRefreshToken) {
		t.Fatalf("newer token after reuse: err = %v, want ErrInvalidRefreshToken", err)
	}
	// Other sessions are untouched.
	if _, err := rotate(s, other, randomHash(t), now); err != nil {
		t.Fatalf("another family: %v", err)
	}
}

func testExpiredAndUnknown(t *testing.T, s accounts.AccountStore) {
	a := mustCreate(t, s, "ann@example.com")
	h1, _ := startFamily(t, s, a)
	if _, err := rotate(s, h1, randomHash(t), base.Add(time.Hour)); !errors.Is(err, accounts.ErrInvalidRefreshToken) ||
		errors.Is(err, accounts.ErrRefreshTokenReused) {
		t.Fatalf("expired token: err = %v, want ErrInvalidRefreshToken", err)
	}
	if _, err := rotate(s, randomHash(t), randomHash(t), base); !errors.Is(err, accounts.ErrInvalidRefreshToken) ||
		errors.Is(err, accounts.ErrRefreshTokenReused) {
		t.Fatalf("unknown token: err = %v, want ErrInvalidRefreshToken", err)
	}
}

func testConcurrentRotation(t *testing.T, s accounts.AccountStore) {
	a := mustCreate(t, s, "ann@example.com")
	h1, _ := startFamily(t, s, a)
	const n = 6
	type result struct {
		next []byte
		err  error
	}
	res := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			next := randomHash(t)
			_, err := rotate(s, h1, next, base.Add(time.Second))
			res[i] = result{next, err}
		})
	}
	wg.Wait()
	var winner []byte
	wins := 0
	for _, r := range res {
		switch {
		case r.err == nil:
			wins++
			winner = r.next
		case !errors.Is(r.err, accounts.ErrInvalidRefreshToken):
			t.Fatalf("concurrent rotation: %v", r.err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d concurrent rotations of one token succeeded, want 1", wins)
	}
	// The losers presented a spent token: the family, the winner's token included,
	// is revoked.
	if _, err := rotate(s, winner, randomHash(t), base.Add(2*time.Second)); !errors.Is(err, accounts.ErrInvalidRefreshToken) {
		t.Fatalf("winner's token after concurrent reuse: err = %v", err)
	}
}

func testRevokeFamily(t *testing.T, s accounts.AccountStore) {
	ctx := context.Background()
	ann := mustCreate(t, s, "ann@example.com")
	bob := mustCreate(t, s, "bob@example.com")
	h1, _ := startFamily(t, s, ann)
	h2 := randomHash(t)
	if _, err := rotate(s, h1, h2, base); err != nil {
		t.Fatal(err)
	}
	keep, _ := startFamily(t, s, ann)

	// Someone else's token, an unknown one: no error, no effect.
	if err := s.RevokeRefreshFamily(ctx, h2, bob.ID, base); err != nil {
		t.Fatalf("revoke by another account: %v", err)
	}
	if err := s.RevokeRefreshFamily(ctx, randomHash(t), ann.ID, base); err != nil {
		t.Fatalf("revoke unknown: %v", err)
	}
	h3 := randomHash(t)
	if _, err := rotate(s, h2, h3, base); err != nil {
		t.Fatalf("a foreign revoke took effect: %v", err)
	}
	// The owner revokes with any token of the family, even a spent one.
	if err := s.RevokeRefreshFamily(ctx, h1, ann.ID, base); err != nil {
		t.Fatal(err)
	}
	if _, err := rotate(s, h3, randomHash(t), base); !errors.Is(err, accounts.ErrInvalidRefreshToken) {
		t.Fatalf("after logout: err = %v, want ErrInvalidRefreshToken", err)
	}
	if err := s.RevokeRefreshFamily(ctx, h3, ann.ID, base); err != nil {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err := rotate(s, keep, randomHash(t), base); err != nil {
		t.Fatalf("another session of the same account: %v", err)
	}
}
