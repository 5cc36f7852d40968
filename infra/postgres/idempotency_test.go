package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

const (
	lease = 30 * time.Second
	ttl   = 24 * time.Hour
)

func newIdemStore(t *testing.T) (*postgres.IdempotencyStore, *pgxpool.Pool) {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	return postgres.NewIdempotencyStore(pool), pool
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestIdempotencyLifecycle(t *testing.T) {
	t.Parallel()
	s, _ := newIdemStore(t)
	ctx := ctxT(t)
	h1, h2 := []byte("hash-1"), []byte("hash-2")

	claimed, _, _, err := s.Claim(ctx, "k", "c1", h1, lease, ttl)
	if err != nil || !claimed {
		t.Fatalf("first claim: claimed=%v err=%v", claimed, err)
	}
	// In progress: same or different hash, nobody else gets it; no response yet.
	for _, h := range [][]byte{h1, h2} {
		claimed, stored, resp, err := s.Claim(ctx, "k", "c2", h, lease, ttl)
		if err != nil || claimed || !bytes.Equal(stored, h1) || resp != nil {
			t.Fatalf("claim in progress (%s): claimed=%v stored=%q resp=%q err=%v", h, claimed, stored, resp, err)
		}
	}
	// Completing with a claim id that is not the owner's fails and stores nothing.
	if err := s.Complete(ctx, "k", "c2", []byte("forged")); !errors.Is(err, postgres.ErrClaimLost) {
		t.Fatalf("complete by non-owner: %v", err)
	}
	if err := s.Complete(ctx, "k", "c1", []byte("response")); err != nil {
		t.Fatal(err)
	}
	claimed, stored, resp, err := s.Claim(ctx, "k", "c3", h1, lease, ttl)
	if err != nil || claimed || !bytes.Equal(stored, h1) || string(resp) != "response" {
		t.Fatalf("replay: claimed=%v stored=%q resp=%q err=%v", claimed, stored, resp, err)
	}
	// A different body never sees the stored response.
	claimed, stored, resp, err = s.Claim(ctx, "k", "c4", h2, lease, ttl)
	if err != nil || claimed || !bytes.Equal(stored, h1) || resp != nil {
		t.Fatalf("mismatch: claimed=%v stored=%q resp=%q err=%v", claimed, stored, resp, err)
	}
	// Completed records cannot be released by a stale claim id.
	if err := s.Release(ctx, "k", "c1"); err != nil {
		t.Fatal(err)
	}
	if _, _, resp, _ := s.Claim(ctx, "k", "c5", h1, lease, ttl); string(resp) != "response" {
		t.Fatal("stale release removed a completed record")
	}
}

func TestIdempotencyReleaseLetsARetryRun(t *testing.T) {
	t.Parallel()
	s, _ := newIdemStore(t)
	ctx := ctxT(t)
	if ok, _, _, err := s.Claim(ctx, "k", "c1", []byte("h"), lease, ttl); !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	if err := s.Release(ctx, "k", "c1"); err != nil {
		t.Fatal(err)
	}
	if ok, _, _, err := s.Claim(ctx, "k", "c2", []byte("other"), lease, ttl); !ok || err != nil {
		t.Fatalf("claim after release: %v %v", ok, err)
	}
}

func TestIdempotencyLapsedLeaseAndExpiry(t *testing.T) {
	t.Parallel()
	s, pool := newIdemStore(t)
	ctx := ctxT(t)
	h := []byte("h")
	if ok, _, _, err := s.Claim(ctx, "crashed", "c1", h, lease, ttl); !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	// Age the lease as if the claiming request crashed 31 s ago.
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET lease_until = now() - interval '1 second' WHERE key = 'crashed'`); err != nil {
		t.Fatal(err)
	}
	// A different body still may not take it over (the crashed request may have written).
	if ok, _, _, err := s.Claim(ctx, "crashed", "c2", []byte("other"), lease, ttl); ok || err != nil {
		t.Fatalf("lapsed lease, other hash: claimed=%v err=%v", ok, err)
	}
	if ok, _, _, err := s.Claim(ctx, "crashed", "c3", h, lease, ttl); !ok || err != nil {
		t.Fatalf("lapsed lease, same hash: claimed=%v err=%v", ok, err)
	}
	// The crashed request's late completion must not overwrite the new owner's claim.
	if err := s.Complete(ctx, "crashed", "c1", []byte("late")); !errors.Is(err, postgres.ErrClaimLost) {
		t.Fatalf("late complete: %v", err)
	}

	// An expired completed record counts as absent: any body claims it again.
	if ok, _, _, err := s.Claim(ctx, "old", "c1", h, lease, ttl); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := s.Complete(ctx, "old", "c1", []byte("r")); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old'`); err != nil {
		t.Fatal(err)
	}
	if ok, _, _, err := s.Claim(ctx, "old", "c2", []byte("new body"), lease, ttl); !ok || err != nil {
		t.Fatalf("claim expired record: %v %v", ok, err)
	}
	if _, err := pool.Exec(ctx, `UPDATE idempotency_keys SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteExpired(ctx, 100)
	if err != nil || n != 2 {
		t.Fatalf("delete expired: n=%d err=%v", n, err)
	}
}

// TestIdempotencyConcurrentClaims races many claims of one key: exactly one wins.
func TestIdempotencyConcurrentClaims(t *testing.T) {
	t.Parallel()
	s, _ := newIdemStore(t)
	ctx := ctxT(t)
	const n = 16
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		wins   int
		errs   []error
		start  = make(chan struct{})
		hashes = [][]byte{[]byte("a"), []byte("b")}
	)
	for i := range n {
		wg.Go(func() {
			<-start
			ok, _, _, err := s.Claim(ctx, "race", fmt.Sprint("c", i), hashes[i%2], lease, ttl)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				wins++
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 || wins != 1 {
		t.Fatalf("wins=%d errs=%v, want exactly one winner", wins, errs)
	}
}

func TestIdempotencyClaimRejectsBadArguments(t *testing.T) {
	t.Parallel()
	s, _ := newIdemStore(t)
	ctx := ctxT(t)
	for _, tc := range []struct {
		key, claim string
		hash       []byte
		lease, ttl time.Duration
	}{
		{"", "c", []byte("h"), lease, ttl},
		{"k", "", []byte("h"), lease, ttl},
		{"k", "c", nil, lease, ttl},
		{"k", "c", []byte("h"), 0, ttl},
		{"k", "c", []byte("h"), lease, 0},
	} {
		if ok, _, _, err := s.Claim(ctx, tc.key, tc.claim, tc.hash, tc.lease, tc.ttl); ok || err == nil {
			t.Errorf("claim(%+v) = %v, %v; want an error", tc, ok, err)
		}
	}
}
