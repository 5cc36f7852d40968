package jwtkeys_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mediamesh/mediamesh/infra/jwtkeys"
)

const (
	issuer   = "mediamesh"
	audience = "mediamesh"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func newSigner(t *testing.T, key ed25519.PrivateKey, opts ...jwtkeys.Option) *jwtkeys.Signer {
	t.Helper()
	s, err := jwtkeys.NewSigner(key, issuer, audience, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(t *testing.T, keys ...ed25519.PrivateKey) *jwtkeys.Verifier {
	t.Helper()
	var pubs []ed25519.PublicKey
	for _, k := range keys {
		pubs = append(pubs, k.Public().(ed25519.PublicKey))
	}
	v, err := jwtkeys.NewVerifier(issuer, audience, pubs)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMintVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	s := newSigner(t, key)
	tok, err := s.Mint("user-1", "editor", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := newVerifier(t, key).Verify(tok)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if c.Subject != "user-1" || c.Role != "editor" {
		t.Fatalf("claims = %+v", c)
	}
	if d := time.Until(c.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("expires in %v, want about 1h", d)
	}
	// The header names the key and the algorithm; the payload has every claim.
	parts := strings.Split(tok, ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	for _, want := range []string{`"alg":"EdDSA"`, `"kid":"` + s.KeyID() + `"`} {
		if !strings.Contains(string(hdr), want) {
			t.Errorf("header %s lacks %s", hdr, want)
		}
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	for _, claim := range []string{`"iss"`, `"aud"`, `"sub"`, `"role"`, `"iat"`, `"nbf"`, `"exp"`} {
		if !strings.Contains(string(payload), claim) {
			t.Errorf("payload %s lacks %s", payload, claim)
		}
	}
}

func TestKeyIDIsStableAndShort(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	if a, b := jwtkeys.KeyID(pub), jwtkeys.KeyID(pub); a != b || len(a) != 16 {
		t.Fatalf("kid %q / %q", a, b)
	}
	if jwtkeys.KeyID(pub) == jwtkeys.KeyID(newKey(t).Public().(ed25519.PublicKey)) {
		t.Fatal("two keys share a kid")
	}
}

func TestRotationWithTwoKeys(t *testing.T) {
	t.Parallel()
	oldKey, newKey_, otherKey := newKey(t), newKey(t), newKey(t)
	v := newVerifier(t, newKey_, oldKey)
	for name, key := range map[string]ed25519.PrivateKey{"old": oldKey, "new": newKey_} {
		tok, err := newSigner(t, key).Mint("u", "viewer", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("%s key: %v", name, err)
		}
	}
	tok, _ := newSigner(t, otherKey).Mint("u", "viewer", time.Minute)
	if _, err := v.Verify(tok); !errors.Is(err, jwtkeys.ErrUnknownKey) {
		t.Fatalf("unknown key: err = %v", err)
	}
	set := v.JWKS()
	if len(set.Keys) != 2 {
		t.Fatalf("jwks has %d keys", len(set.Keys))
	}
	for _, k := range set.Keys {
		if k.KeyType != "OKP" || k.Curve != "Ed25519" || k.Alg != "EdDSA" || k.Use != "sig" || len(k.KeyID) != 16 {
			t.Errorf("jwk %+v", k)
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize || jwtkeys.KeyID(x) != k.KeyID {
			t.Errorf("jwk x %q does not match its kid", k.X)
		}
	}
}

// forge signs arbitrary claims and headers with key, bypassing the Signer.
func forge(t *testing.T, method jwt.SigningMethod, key any, hdr map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	kid := jwtkeys.KeyID(pub)
	v := newVerifier(t, key)
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "u", "role": "editor",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	with := func(k string, val any) jwt.MapClaims {
		c := good()
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	kidHdr := map[string]any{"kid": kid}
	valid := forge(t, jwt.SigningMethodEdDSA, key, kidHdr, good())
	if _, err := v.Verify(valid); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	tests := map[string]string{
		"empty":              "",
		"garbage":            "not.a.token",
		"tampered payload":   tamper(valid),
		"alg none":           noneTok,
		"hs256 with pub key": forge(t, jwt.SigningMethodHS256, []byte(pub), kidHdr, good()),
		"no kid":             forge(t, jwt.SigningMethodEdDSA, key, nil, good()),
		"unknown kid":        forge(t, jwt.SigningMethodEdDSA, key, map[string]any{"kid": "AAAAAAAAAAAAAAAA"}, good()),
		"expired":            forge(t, jwt.SigningMethodEdDSA, key, kidHdr, with("exp", now.Add(-time.Hour).Unix())),
		"no exp":             forge(t, jwt.SigningMethodEdDSA, key, kidHdr, with("exp", nil)),
		"not yet valid":      forge(t, jwt.SigningMethodEdDSA, key, kidHdr, with("nbf", now.Add(time.Hour).Unix())),
		"issued in future":   forge(t, jwt.SigningMethodEdDSA, key, kidHdr, with("iat", now.Add(time.Hour).Unix())),
		"wrong issuer":       forge(t, jwt.SigningMethodEdDSA, key, kidHdr, with("iss", "evil")),
		"wrong audience":     forge(t, jwt.SigningMethodEdDSA, key, kidHdr, with("aud", "other")),
		"no subject":         forge(t, jwt.SigningMethodEdDSA, key, kidHdr, with("sub", nil)),
		"no role":            forge(t, jwt.SigningMethodEdDSA, key, kidHdr, with("role", nil)),
		"huge":               strings.Repeat("a", 10_000),
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if c, err := v.Verify(tok); err == nil {
				t.Fatalf("accepted: %+v", c)
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tok, err := newSigner(t, key, jwtkeys.WithClock(func() time.Time { return base })).Mint("u", "admin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pub := []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	for _, tc := range []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"skewed early within leeway", base.Add(-10 * time.Second), true},
		{"too early", base.Add(-time.Minute), false},
		{"just expired within leeway", base.Add(time.Minute + 10*time.Second), true},
		{"expired", base.Add(2 * time.Minute), false},
	} {
		v, err := jwtkeys.NewVerifier(issuer, audience, pub, jwtkeys.WithClock(func() time.Time { return tc.at }))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), `"editor"`, `"admin"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func TestLoadOrGenerate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := jwtkeys.LoadOrGenerate("", dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, jwtkeys.DefaultKeyFileName)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := jwtkeys.LoadOrGenerate("", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("second start generated a different key")
	}
	// A configured file wins; the PEM written is PKCS#8 that LoadPrivateKey reads.
	k3, err := jwtkeys.LoadOrGenerate(path, t.TempDir())
	if err != nil || !k1.Equal(k3) {
		t.Fatalf("load configured file: %v", err)
	}
	if _, err := jwtkeys.LoadOrGenerate(filepath.Join(dir, "missing.pem"), dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing configured file: err = %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data dir holds %d files, want only the key", len(entries))
	}
}

func TestLoadOrGenerateConcurrentStartsAgree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 8
	keys := make([]ed25519.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = jwtkeys.LoadOrGenerate("", dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !keys[i].Equal(keys[0]) {
			t.Fatal("concurrent starts generated different keys")
		}
	}
}

func TestLoadRejectsBadPEM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rsaLike := "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
	for name, content := range map[string]string{
		"not pem":     "hello",
		"wrong block": rsaLike,
		"bad der":     "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := jwtkeys.LoadPrivateKey(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
