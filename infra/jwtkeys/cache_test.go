package jwtkeys_test

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mediamesh/mediamesh/infra/jwtkeys"
)

// clock is a settable clock for the signer, the verifier and the cache.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}
func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) opt() jwtkeys.Option { return jwtkeys.WithClock(c.now) }

func newCaching(t *testing.T, key ed25519.PrivateKey, size int, c *clock) *jwtkeys.CachingVerifier {
	t.Helper()
	v, err := jwtkeys.NewVerifier(issuer, audience, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, c.opt())
	if err != nil {
		t.Fatal(err)
	}
	cv, err := jwtkeys.NewCachingVerifier(v, size, c.opt())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cv.Close)
	return cv
}

func TestCachingVerifierHitsAndStillRejects(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	c := newClock(time.Now())
	cv := newCaching(t, key, 0, c)
	tok, err := newSigner(t, key, c.opt()).Mint("u", "editor", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		claims, err := cv.Verify(tok)
		if err != nil || claims.Subject != "u" || claims.Role != "editor" {
			t.Fatalf("verify %d: %+v, %v", i, claims, err)
		}
	}
	if hr := cv.HitRate(); hr < 0.6 {
		t.Fatalf("hit rate %.2f after 1 miss and 2 hits", hr)
	}
	// A cached token does not make its tampered copies pass: they hash elsewhere.
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "u",
		"role": "admin", "exp": c.now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for name, bad := range map[string]string{"tampered": tamper(tok), "truncated": tok[:len(tok)-1], "alg none": noneTok} {
		if _, err := cv.Verify(bad); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if n := cv.Len(); n > 1 {
		t.Fatalf("%d cache entries: failures were cached", n)
	}
}

func TestCachingVerifierNeverOutlivesExp(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	c := newClock(time.Now())
	cv := newCaching(t, key, 0, c)
	tok, _ := newSigner(t, key, c.opt()).Mint("u", "viewer", time.Minute)
	if _, err := cv.Verify(tok); err != nil {
		t.Fatal(err)
	}
	// Just before exp: a hit. At exp: the entry is not used; the verifier's leeway
	// still accepts it (uncached). Past the leeway: rejected.
	c.set(c.now().Add(59 * time.Second))
	if _, err := cv.Verify(tok); err != nil {
		t.Fatalf("before exp: %v", err)
	}
	c.set(c.now().Add(time.Second + jwtkeys.DefaultLeeway + time.Second))
	if _, err := cv.Verify(tok); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("after exp and leeway: err = %v, want expired (not a cache hit)", err)
	}
}

func TestCachingVerifierIsBounded(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	c := newClock(time.Now())
	cv := newCaching(t, key, 50, c)
	s := newSigner(t, key, c.opt())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 250 {
				tok, err := s.Mint(string(rune('a'+w))+string(rune(i)), "viewer", time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := cv.Verify(tok); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// 1,000 distinct tokens went through a cache of 50. Eviction is asynchronous,
	// but once the writers have stopped Len drains the pending work, and then the
	// bound holds exactly. An unbounded cache would hold all 1,000.
	if n := cv.Len(); n > 50 || n == 0 {
		t.Fatalf("%d entries in a cache of 50 after 1,000 distinct tokens", n)
	}
}

func TestVerificationKeysForRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	oldKey, newKey_, otherKey := newKey(t), newKey(t), newKey(t)
	write := func(name string, data []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	oldPEM, err := jwtkeys.MarshalPrivateKeyPEM(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, err := jwtkeys.MarshalPublicKeyPEM(otherKey.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	oldFile, otherFile := write("old.pem", oldPEM), write("other.pub.pem", otherPub)

	keys, err := jwtkeys.VerificationKeys(newKey_, []string{oldFile, otherFile})
	if err != nil {
		t.Fatal(err)
	}
	v, err := jwtkeys.NewVerifier(issuer, audience, keys)
	if err != nil {
		t.Fatal(err)
	}
	// The new key signs, the old one (from its private key file) and the other (a
	// public key file) still verify; the JWKS lists all three, the signing key first.
	for name, k := range map[string]ed25519.PrivateKey{"new": newKey_, "old": oldKey, "other": otherKey} {
		tok, _ := newSigner(t, k).Mint("u", "viewer", time.Minute)
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("%s key: %v", name, err)
		}
	}
	set := v.JWKS()
	if len(set.Keys) != 3 || set.Keys[0].KeyID != jwtkeys.KeyID(newKey_.Public().(ed25519.PublicKey)) {
		t.Fatalf("jwks %+v", set)
	}

	// Every configured file must load, and all problems are reported at once.
	bad := write("bad.pem", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	_, err = jwtkeys.VerificationKeys(newKey_, []string{filepath.Join(dir, "missing.pem"), bad})
	if !errors.Is(err, os.ErrNotExist) || err == nil || !strings.Contains(err.Error(), "bad.pem") {
		t.Fatalf("missing and bad files: err = %v", err)
	}
}

// BenchmarkVerify compares a verification with and without the cache (the bench
// suite `mediamesh bench auth` measures the same under concurrency).
func BenchmarkVerify(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	s, _ := jwtkeys.NewSigner(key, issuer, audience)
	v, _ := jwtkeys.NewVerifier(issuer, audience, []ed25519.PublicKey{s.PublicKey()})
	tok, _ := s.Mint("user-1", "editor", time.Hour)
	b.Run("uncached", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		cv, _ := jwtkeys.NewCachingVerifier(v, 0)
		defer cv.Close()
		for b.Loop() {
			if _, err := cv.Verify(tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
