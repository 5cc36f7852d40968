package jwtkeys

import (
	"crypto/sha256"
	"errors"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/maypok86/otter/v2/stats"
)

// DefaultCacheSize bounds the verified-token cache: at ~150 bytes an entry, 100k
// live sessions' tokens take about 15 MB.
const DefaultCacheSize = 100_000

// CachingVerifier remembers the tokens a Verifier accepted, so that a client sending
// the same token again (every request of a session, for up to 15 minutes) costs a
// SHA-256 and a map lookup instead of an Ed25519 verification and a JSON parse.
//
// Decisions:
//   - The key is the SHA-256 of the whole token, never the token: a hit needs the
//     exact bytes that were verified (a tampered token hashes elsewhere and is
//     verified in full), and the cache holds no bearer credentials.
//   - An entry expires at the token's exp and a hit is re-checked against exp, so a
//     cached token is never accepted after it expired. (The Verifier's leeway may
//     still accept it for a few seconds, uncached.)
//   - Failures are not cached: an attacker's junk costs a parse each time, and no
//     one can fill the cache with tokens that were never valid.
//   - Revocation is by short expiry, not by evicting entries: access tokens live 15
//     minutes and are never revoked, so the cache keeps no revocation list either.
//   - Bounded (DefaultCacheSize); otter evicts the least likely to be used again.
type CachingVerifier struct {
	inner *Verifier
	cache *otter.Cache[[sha256.Size]byte, Claims]
	stats *stats.Counter
	now   func() time.Time
}

// NewCachingVerifier wraps v with a cache of at most maxEntries verified tokens
// (DefaultCacheSize when 0). Only WithClock applies among the options; it must be
// the same clock as v's. Close stops the cache's clean-up goroutine.
func NewCachingVerifier(v *Verifier, maxEntries int, opts ...Option) (*CachingVerifier, error) {
	if v == nil {
		return nil, errors.New("new caching verifier: nil verifier")
	}
	if maxEntries == 0 {
		maxEntries = DefaultCacheSize
	}
	if maxEntries < 0 {
		return nil, errors.New("new caching verifier: negative size")
	}
	o := buildOptions(opts)
	c := &CachingVerifier{inner: v, stats: stats.NewCounter(), now: o.now}
	cache, err := otter.New(&otter.Options[[sha256.Size]byte, Claims]{
		MaximumSize:   maxEntries,
		StatsRecorder: c.stats,
		ExpiryCalculator: otter.ExpiryCreatingFunc(func(e otter.Entry[[sha256.Size]byte, Claims]) time.Duration {
			return e.Value.ExpiresAt.Sub(c.now())
		}),
	})
	if err != nil {
		return nil, err
	}
	c.cache = cache
	return c, nil
}

// Verify returns the claims of a token verified before and not yet expired, or
// verifies it with the wrapped Verifier and remembers it.
func (c *CachingVerifier) Verify(token string) (Claims, error) {
	if token == "" || len(token) > maxTokenLength {
		return c.inner.Verify(token)
	}
	key := sha256.Sum256([]byte(token))
	now := c.now()
	if claims, ok := c.cache.GetIfPresent(key); ok && now.Before(claims.ExpiresAt) {
		return claims, nil
	}
	claims, err := c.inner.Verify(token)
	if err != nil {
		return Claims{}, err
	}
	if now.Before(claims.ExpiresAt) {
		c.cache.Set(key, claims)
	}
	return claims, nil
}

// JWKS returns the wrapped Verifier's key set.
func (c *CachingVerifier) JWKS() JWKSet { return c.inner.JWKS() }

// HitRate is the share of Verify calls answered from the cache so far (bench).
func (c *CachingVerifier) HitRate() float64 { return c.stats.Snapshot().HitRatio() }

// Len is the number of cached tokens. It first runs the cache's pending
// maintenance: otter evicts asynchronously (Set records its work in a buffer that is
// drained later), so without it the count may exceed the bound until the next
// drain. The count is exact when no Verify runs at the same time.
func (c *CachingVerifier) Len() int {
	c.cache.CleanUp()
	return c.cache.EstimatedSize()
}

// Close stops the cache's background goroutine; the verifier still works after it.
func (c *CachingVerifier) Close() { c.cache.StopAllGoroutines() }
