package accounts_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/command/accounts"
	"github.com/mediamesh/mediamesh/command/accounts/accountstest"
)

// memStore is an in-memory AccountStore for the use-case tests; one mutex
// serializes everything, which satisfies the port's atomicity rules. It runs the
// same conformance suite as the PostgreSQL adapter.
type memStore struct {
	mu       sync.Mutex
	byID     map[string]accounts.Account
	byEmail  map[string]string
	tokens   map[string]*memToken
	families map[string]*memFamily
}

type memToken struct {
	rt    accounts.RefreshToken
	spent bool
}

type memFamily struct {
	accountID string
	revoked   bool
}

func newMemStore() *memStore {
	return &memStore{byID: map[string]accounts.Account{}, byEmail: map[string]string{},
		tokens: map[string]*memToken{}, families: map[string]*memFamily{}}
}

func (m *memStore) CreateAccount(_ context.Context, a accounts.Account) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.byEmail[a.Email]; dup {
		return accounts.ErrEmailTaken
	}
	m.byID[a.ID], m.byEmail[a.Email] = a, a.ID
	return nil
}

func (m *memStore) AccountByEmail(_ context.Context, email string) (accounts.Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.byEmail[email]
	if !ok {
		return accounts.Account{}, accounts.ErrNotFound
	}
	return m.byID[id], nil
}

func (m *memStore) AccountByID(_ context.Context, id string) (accounts.Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.byID[id]
	if !ok {
		return accounts.Account{}, accounts.ErrNotFound
	}
	return a, nil
}

func (m *memStore) SetRole(_ context.Context, email, role string, now time.Time) (accounts.Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.byEmail[email]
	if !ok {
		return accounts.Account{}, accounts.ErrNotFound
	}
	a := m.byID[id]
	a.Role, a.UpdatedAt = role, now
	m.byID[id] = a
	return a, nil
}

func (m *memStore) CreateRefreshToken(_ context.Context, t accounts.RefreshToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byID[t.AccountID]; !ok {
		return fmt.Errorf("no account %s", t.AccountID)
	}
	m.families[t.FamilyID] = &memFamily{accountID: t.AccountID}
	m.tokens[string(t.Hash)] = &memToken{rt: t}
	return nil
}

func (m *memStore) RotateRefreshToken(_ context.Context, presented []byte, next accounts.RefreshToken, now time.Time) (accounts.RefreshToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tok, ok := m.tokens[string(presented)]
	if !ok {
		return accounts.RefreshToken{}, accounts.ErrInvalidRefreshToken
	}
	fam := m.families[tok.rt.FamilyID]
	switch {
	case fam.revoked:
		return accounts.RefreshToken{}, accounts.ErrInvalidRefreshToken
	case tok.spent:
		fam.revoked = true
		return accounts.RefreshToken{}, accounts.ErrRefreshTokenReused
	case !now.Before(tok.rt.ExpiresAt):
		return accounts.RefreshToken{}, accounts.ErrInvalidRefreshToken
	}
	tok.spent = true
	next.FamilyID, next.AccountID = tok.rt.FamilyID, tok.rt.AccountID
	m.tokens[string(next.Hash)] = &memToken{rt: next}
	return next, nil
}

func (m *memStore) RevokeRefreshFamily(_ context.Context, presented []byte, accountID string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tok, ok := m.tokens[string(presented)]; ok {
		if fam := m.families[tok.rt.FamilyID]; fam.accountID == accountID {
			fam.revoked = true
		}
	}
	return nil
}

func TestMemStoreConforms(t *testing.T) {
	t.Parallel()
	accountstest.Run(t, func(*testing.T) accounts.AccountStore { return newMemStore() })
}
