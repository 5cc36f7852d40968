package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// HeaderConsistencyToken carries a consistency token: in every write response, and
// in a read that must see that write (API.md "Consistency tokens").
const HeaderConsistencyToken = "X-Consistency-Token"

// ErrInvalidConsistencyToken: a token that is garbled, forged or tampered with (400).
var ErrInvalidConsistencyToken = errors.New("invalid consistency token")

// maxConsistencyTokenLen bounds what Verify looks at; real tokens are ~150 bytes.
const maxConsistencyTokenLen = 1024

// consistencyKeyLabel separates this MAC key from any other use of the secret.
const consistencyKeyLabel = "mediamesh/consistency-token/v1"

// WritePoint names a write: its stream, the stream's version after it, and the
// global position of its last event. A read that includes the write has applied
// the stream up to Version (exact per stream, whatever the order of partitions)
// and, for a reader of the global log, everything up to Position.
type WritePoint struct {
	StreamID string `json:"s"`
	Version  int64  `json:"v"`
	Position int64  `json:"p"`
}

// ConsistencyTokens signs and verifies consistency tokens. A token is
// base64url(JSON of the WritePoint) + "." + base64url(HMAC-SHA256 of that text): the
// content is not secret (clients must still treat it as opaque), but it cannot be
// forged, so a read never waits on a position nobody wrote.
type ConsistencyTokens struct {
	key []byte
}

// NewConsistencyTokens derives the MAC key from secret (at least 16 bytes). Every
// instance of a deployment must be given the same secret; the composition root
// derives it from the JWT signing key's seed, which every instance shares already.
func NewConsistencyTokens(secret []byte) (*ConsistencyTokens, error) {
	if len(secret) < 16 {
		return nil, errors.New("consistency tokens: the secret must have at least 16 bytes")
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(consistencyKeyLabel))
	return &ConsistencyTokens{key: m.Sum(nil)}, nil
}

func (t *ConsistencyTokens) mac(payload string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Sign returns the token of p.
func (t *ConsistencyTokens) Sign(p WritePoint) string {
	data, _ := json.Marshal(p) // a struct of a string and ints always marshals
	payload := base64.RawURLEncoding.EncodeToString(data)
	return payload + "." + base64.RawURLEncoding.EncodeToString(t.mac(payload))
}

// Verify returns the write a token names, or an error wrapping
// ErrInvalidConsistencyToken when it does not verify.
func (t *ConsistencyTokens) Verify(token string) (WritePoint, error) {
	bad := func(why string) (WritePoint, error) {
		return WritePoint{}, fmt.Errorf("%w: %s", ErrInvalidConsistencyToken, why)
	}
	if token == "" || len(token) > maxConsistencyTokenLen {
		return bad("wrong length")
	}
	payload, sig, ok := strings.Cut(token, ".")
	if !ok {
		return bad("malformed")
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || !hmac.Equal(mac, t.mac(payload)) {
		return bad("signature does not match")
	}
	data, err := base64.RawURLEncoding.Strict().DecodeString(payload)
	if err != nil {
		return bad("malformed payload")
	}
	var p WritePoint
	if err := json.Unmarshal(data, &p); err != nil || p.StreamID == "" || p.Version < 1 || p.Position < 0 {
		return bad("malformed payload")
	}
	return p, nil
}
