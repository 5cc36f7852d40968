package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrClaimLost is returned by Complete when the claim is no longer the caller's: its
// lease lapsed and another request reclaimed the key, or the record expired.
var ErrClaimLost = errors.New("idempotency claim lost")

// IdempotencyStore keeps the command API's Idempotency-Key records in the table
// idempotency_keys (migration 00005). It implements the api package's port with
// plain types only, so this adapter does not depend on the HTTP layer.
//
// A record goes through two states. Claimed: a request owns the key (claim_id) until
// lease_until; a concurrent request with the same key is told so and answered 409.
// Completed: the response is stored and replayed to every retry with the same
// request hash until expires_at. A claim whose lease lapsed (the request crashed) can
// be reclaimed, but only by a request with the same hash: the crashed one may have
// appended events whose ids derive from the key, and only the same request may
// (harmlessly) append them again.
//
// Every transition is one statement, so the store needs no transactions or locks
// besides the row lock PostgreSQL takes for INSERT … ON CONFLICT.
type IdempotencyStore struct {
	pool *pgxpool.Pool
}

// NewIdempotencyStore returns a store on pool; it panics on a nil pool.
func NewIdempotencyStore(pool *pgxpool.Pool) *IdempotencyStore {
	if pool == nil {
		panic("postgres: nil pool")
	}
	return &IdempotencyStore{pool: pool}
}

// claimSQL inserts a new claim, or takes over a record that expired or whose lease
// lapsed with the same request hash. It returns a row only when the caller now owns
// the key.
const claimSQL = `
INSERT INTO idempotency_keys AS k (key, request_hash, claim_id, lease_until, response, created_at, expires_at)
VALUES ($1, $2, $3, now() + $4 * interval '1 microsecond', NULL, now(), now() + $5 * interval '1 microsecond')
ON CONFLICT (key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash,
       claim_id     = EXCLUDED.claim_id,
       lease_until  = EXCLUDED.lease_until,
       response     = NULL,
       created_at   = EXCLUDED.created_at,
       expires_at   = EXCLUDED.expires_at
 WHERE k.expires_at <= now()
    OR (k.response IS NULL AND k.lease_until <= now() AND k.request_hash = EXCLUDED.request_hash)
RETURNING true`

// Claim tries to claim key for a request whose hash is requestHash, naming the claim
// claimID (a random value chosen by the caller). The lease bounds how long the claim
// holds against a retry of the same request; ttl is how long the record is kept.
//
// When claimed is true the caller owns the key and must Complete or Release it.
// Otherwise storedHash is the hash of the request that owns or completed the key and
// response is the stored response, or nil while that request is still in progress.
func (s *IdempotencyStore) Claim(ctx context.Context, key, claimID string, requestHash []byte, lease, ttl time.Duration) (claimed bool, storedHash, response []byte, err error) {
	if key == "" || claimID == "" || len(requestHash) == 0 || lease <= 0 || ttl <= 0 {
		return false, nil, nil, errors.New("claim idempotency key: key, claim id, hash, lease and ttl are required")
	}
	// A record deleted between the failed claim and the read (expired and purged) is
	// claimable again: try a few times rather than report a spurious conflict.
	for range 3 {
		var ok bool
		err := s.pool.QueryRow(ctx, claimSQL, key, requestHash, claimID, lease.Microseconds(), ttl.Microseconds()).Scan(&ok)
		if err == nil {
			return true, nil, nil, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return false, nil, nil, fmt.Errorf("claim idempotency key: %w", err)
		}
		err = s.pool.QueryRow(ctx,
			`SELECT request_hash, response FROM idempotency_keys WHERE key = $1 AND expires_at > now()`,
			key).Scan(&storedHash, &response)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return false, nil, nil, fmt.Errorf("read idempotency key: %w", err)
		}
		if !bytes.Equal(storedHash, requestHash) {
			// A different request: its response is none of this caller's business.
			response = nil
		}
		return false, storedHash, response, nil
	}
	return false, nil, nil, errors.New("claim idempotency key: record keeps changing")
}

// Complete stores the response of the request that holds claimID and ends its claim.
func (s *IdempotencyStore) Complete(ctx context.Context, key, claimID string, response []byte) error {
	if response == nil {
		response = []byte{}
	}
	tag, err := s.pool.Exec(ctx,
		`UPDATE idempotency_keys SET response = $3, claim_id = NULL, lease_until = NULL
		  WHERE key = $1 AND claim_id = $2`,
		key, claimID, response)
	if err != nil {
		return fmt.Errorf("complete idempotency key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("complete idempotency key: %w", ErrClaimLost)
	}
	return nil
}

// Release gives up the claim claimID (the request failed with nothing worth
// replaying), so a retry runs the command again. Releasing a lost claim is a no-op.
func (s *IdempotencyStore) Release(ctx context.Context, key, claimID string) error {
	if _, err := s.pool.Exec(ctx,
		`DELETE FROM idempotency_keys WHERE key = $1 AND claim_id = $2`, key, claimID); err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

// DeleteExpired removes up to limit records past their expiry and returns how many it
// removed; expired records already count as absent, so this only reclaims space.
// Call it periodically (the composition root does) until it returns less than limit.
func (s *IdempotencyStore) DeleteExpired(ctx context.Context, limit int) (int64, error) {
	if limit <= 0 {
		limit = 10_000
	}
	tag, err := s.pool.Exec(ctx,
		`DELETE FROM idempotency_keys WHERE key IN (
		   SELECT key FROM idempotency_keys WHERE expires_at <= now() ORDER BY expires_at LIMIT $1
		   FOR UPDATE SKIP LOCKED)`, limit)
	if err != nil {
		return 0, fmt.Errorf("delete expired idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
