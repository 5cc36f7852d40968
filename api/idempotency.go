package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/events"
)

// HeaderIdempotencyKey is the client's key for a command (API.md "Commands").
const HeaderIdempotencyKey = "Idempotency-Key"

// HeaderIdempotentReplayed marks a response replayed from an idempotency record.
const HeaderIdempotentReplayed = "Idempotent-Replayed"

// maxIdempotencyKeyLen bounds a client's key (visible ASCII, like a UUID or a ULID).
const maxIdempotencyKeyLen = 255

// IdempotencyStore keeps Idempotency-Key records (infra/postgres.IdempotencyStore).
// Its methods take plain types so that an adapter need not import this package.
//
// Claim claims key for a request whose hash is requestHash, naming the claim claimID.
// lease bounds how long the claim holds against a retry of the same request (after
// it, a retry with the same hash may take the key over: the first request
// crashed); ttl is how long the record is kept. When claimed is false, storedHash is
// the hash of the request that holds or completed the key, and response its stored
// response (nil while it is in progress, or when the hashes differ). Complete stores
// the claim's response; Release drops the claim so that a retry runs again.
type IdempotencyStore interface {
	Claim(ctx context.Context, key, claimID string, requestHash []byte, lease, ttl time.Duration) (claimed bool, storedHash, response []byte, err error)
	Complete(ctx context.Context, key, claimID string, response []byte) error
	Release(ctx context.Context, key, claimID string) error
}

// storedResponse is a command's response as it is sent and kept for replay: the
// status, the headers the route set (Content-Type, Location, ETag,
// X-Consistency-Token, Retry-After) and the body.
type storedResponse struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    []byte            `json:"body"`
}

// validIdempotencyKey accepts 1–255 visible ASCII characters.
func validIdempotencyKey(k string) bool {
	if k == "" || len(k) > maxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// scopedKey names a client's key within its scope: the caller (token subject), the
// method and the route pattern, so two callers' equal keys can never collide.
// Length prefixes keep the parts from running into each other.
func scopedKey(subject, method, route, key string) string {
	h := sha256.New()
	h.Write([]byte("mediamesh/idempotency/v1"))
	for _, part := range []string{subject, method, route, key} {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(part)))])
		h.Write([]byte(part))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// derivationKey is what the command side derives event ids (and new ids) from:
// the scoped key and the request's hash. A retry of the same request derives the
// same ids, so it can never append twice; the key used again for another request
// after its record expired (24 h) derives other ids, so that request runs rather
// than being mistaken for the first one by the event store's idempotency.
func derivationKey(scoped string, hash []byte) string {
	return scoped + "." + hex.EncodeToString(hash)
}

// requestHash identifies a request's content: method, path and body.
func requestHash(method, path string, body []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(method), []byte(path), body} {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(part)))])
		h.Write(part)
	}
	return h.Sum(nil)
}

func newClaimID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

// keepOutcome says whether an outcome is replayed to retries: successes and the
// client's own errors, which the same request would meet again. A version conflict
// (the retries ran out while others wrote) and any 5xx are transient: the claim is
// released and a retry runs the command again, safely, since its event ids derive
// from the key and the request (derivationKey).
func keepOutcome(status int, err error) bool {
	if status >= 500 || status == http.StatusTooManyRequests {
		return false
	}
	return !errors.Is(err, events.ErrVersionConflict)
}

// idempotent runs a command under the request's Idempotency-Key, if it has one.
// exec gets the key to derive ids from (derivationKey; empty without one) and returns the response to send and
// the error behind it (nil for a success). Without a key it just runs.
//
// With a key: the same key and request as a completed one replays the stored
// response; a different request with the key, or one while the first is still
// running, is 409; otherwise the key is claimed, the command runs, and its outcome
// is stored or the claim released (see keepOutcome).
func (s *server) idempotent(c *fiber.Ctx, body []byte, exec func(scoped string) (storedResponse, error)) error {
	key := c.Get(HeaderIdempotencyKey)
	if key == "" {
		resp, _ := exec("")
		return sendStored(c, resp, false)
	}
	if !validIdempotencyKey(key) {
		return errBadRequest("invalid header", FieldError{Field: HeaderIdempotencyKey, Message: "must be 1–255 visible ASCII characters"})
	}
	scoped := scopedKey(principalOf(c).Subject, c.Method(), c.Route().Path, key)
	hash := requestHash(c.Method(), c.Path(), body)
	claimID := newClaimID()

	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
	defer cancel()
	claimed, storedHash, stored, err := s.deps.Idempotency.Claim(ctx, scoped, claimID, hash, s.cfg.IdempotencyLease, s.cfg.IdempotencyTTL)
	if err != nil {
		s.log.Error("claim idempotency key", slog.String("request_id", requestIDOf(c)), slog.String("error", err.Error()))
		return errUnavailable("the idempotency store is unavailable; retry later")
	}
	if !claimed {
		switch {
		case !bytes.Equal(storedHash, hash):
			return &httpError{status: http.StatusConflict, kind: "idempotency-key-reused",
				detail: "this Idempotency-Key was used for a different request"}
		case stored == nil:
			return &httpError{status: http.StatusConflict, kind: "idempotency-key-in-progress",
				detail:  "a request with this Idempotency-Key is still in progress",
				headers: map[string]string{fiber.HeaderRetryAfter: "1"}}
		}
		var resp storedResponse
		if err := json.Unmarshal(stored, &resp); err != nil {
			return errors.Join(errInternal, err)
		}
		return sendStored(c, resp, true)
	}

	done := false
	defer func() {
		if !done { // exec panicked: free the key at once rather than after the lease
			s.release(c, scoped, claimID)
		}
	}()
	resp, execErr := exec(derivationKey(scoped, hash))
	done = true
	if keepOutcome(resp.Status, execErr) {
		data, err := json.Marshal(resp)
		if err == nil {
			err = s.deps.Idempotency.Complete(context.WithoutCancel(ctx), scoped, claimID, data)
		}
		if err != nil {
			// The command ran; the client gets its response. A retry finds the claim
			// and, once its lease lapses, runs the command again with the same ids.
			s.log.Error("complete idempotency key", slog.String("request_id", requestIDOf(c)), slog.String("error", err.Error()))
		}
	} else {
		s.release(c, scoped, claimID)
	}
	return sendStored(c, resp, false)
}

func (s *server) release(c *fiber.Ctx, scoped, claimID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.UserContext()), s.cfg.CommandTimeout)
	defer cancel()
	if err := s.deps.Idempotency.Release(ctx, scoped, claimID); err != nil {
		s.log.Error("release idempotency key", slog.String("request_id", requestIDOf(c)), slog.String("error", err.Error()))
	}
}

// sendStored writes a response built by a command route (or replayed).
func sendStored(c *fiber.Ctx, r storedResponse, replayed bool) error {
	for k, v := range r.Headers {
		c.Set(k, v)
	}
	if replayed {
		c.Set(HeaderIdempotentReplayed, "true")
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Status(r.Status)
	c.Response().SetBodyRaw(r.Body)
	return nil
}
