package jwtkeys

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultLeeway is the clock skew tolerated on exp, nbf and iat: small enough that an
// expired token stops working almost at once, large enough for unsynchronized hosts.
const DefaultLeeway = 30 * time.Second

// maxTokenLength bounds the work spent on a token before any parsing: our tokens
// are about 300 bytes.
const maxTokenLength = 4096

// Claims is what a verified access token says about its bearer.
type Claims struct {
	Subject   string
	Role      string
	ExpiresAt time.Time
}

// tokenClaims is the JWT payload: the registered claims plus the role.
type tokenClaims struct {
	jwt.RegisteredClaims
	Role string `json:"role"`
}

// Signer mints access tokens with one Ed25519 key.
type Signer struct {
	key      ed25519.PrivateKey
	kid      string
	issuer   string
	audience string
	now      func() time.Time
}

// Option configures a Signer or a Verifier.
type Option func(*options)

type options struct {
	now    func() time.Time
	leeway time.Duration
}

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLeeway replaces DefaultLeeway (Verifier only).
func WithLeeway(d time.Duration) Option { return func(o *options) { o.leeway = d } }

func buildOptions(opts []Option) options {
	o := options{now: time.Now, leeway: DefaultLeeway}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// NewSigner returns a Signer that mints tokens for issuer and audience.
func NewSigner(key ed25519.PrivateKey, issuer, audience string, opts ...Option) (*Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("new signer: invalid Ed25519 private key")
	}
	if issuer == "" || audience == "" {
		return nil, errors.New("new signer: issuer and audience are required")
	}
	o := buildOptions(opts)
	return &Signer{
		key:      key,
		kid:      KeyID(key.Public().(ed25519.PublicKey)),
		issuer:   issuer,
		audience: audience,
		now:      o.now,
	}, nil
}

// KeyID is the kid of the signing key.
func (s *Signer) KeyID() string { return s.kid }

// PublicKey is the public half of the signing key.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Mint returns a signed access token for subject with role, valid for ttl from now.
// It carries iss, aud, sub, role, iat, nbf and exp, and the key id in its header.
func (s *Signer) Mint(subject, role string, ttl time.Duration) (string, error) {
	if subject == "" || role == "" {
		return "", errors.New("mint token: subject and role are required")
	}
	if ttl <= 0 {
		return "", errors.New("mint token: ttl must be positive")
	}
	now := s.now().Truncate(time.Second)
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{s.audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Role: role,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return signed, nil
}

// Verifier checks access tokens against a set of public keys.
type Verifier struct {
	keys   map[string]ed25519.PublicKey
	order  []string // kids in the order given, for a stable JWKS
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for tokens of issuer and audience signed by any of
// keys (during a rotation, the new and the old key).
func NewVerifier(issuer, audience string, keys []ed25519.PublicKey, opts ...Option) (*Verifier, error) {
	if issuer == "" || audience == "" {
		return nil, errors.New("new verifier: issuer and audience are required")
	}
	if len(keys) == 0 {
		return nil, errors.New("new verifier: no public keys")
	}
	v := &Verifier{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("new verifier: invalid Ed25519 public key")
		}
		kid := KeyID(k)
		if _, dup := v.keys[kid]; dup {
			continue
		}
		v.keys[kid] = k
		v.order = append(v.order, kid)
	}
	o := buildOptions(opts)
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(o.leeway),
		jwt.WithTimeFunc(o.now),
		jwt.WithStrictDecoding(),
	)
	return v, nil
}

// Errors of Verify, besides those of golang-jwt (wrapped).
var (
	// ErrUnknownKey: the token's kid names none of the verifier's keys.
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrInvalidToken: the token is malformed or lacks a required claim.
	ErrInvalidToken = errors.New("invalid token")
)

// Verify checks token's signature (alg must be EdDSA, kid one of the keys), its
// issuer, audience, exp (required), nbf and iat (with the leeway), and that it names
// a subject and a role.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" || len(token) > maxTokenLength {
		return Claims{}, fmt.Errorf("verify token: %w", ErrInvalidToken)
	}
	var claims tokenClaims
	_, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, ok := v.keys[kid]
		if !ok {
			return nil, ErrUnknownKey
		}
		return key, nil
	})
	if err != nil {
		return Claims{}, fmt.Errorf("verify token: %w", err)
	}
	if claims.Subject == "" || claims.Role == "" || claims.ExpiresAt == nil {
		return Claims{}, fmt.Errorf("verify token: %w: sub and role are required", ErrInvalidToken)
	}
	return Claims{Subject: claims.Subject, Role: claims.Role, ExpiresAt: claims.ExpiresAt.Time}, nil
}

// JWK is an Ed25519 public key as a JSON Web Key (RFC 8037).
type JWK struct {
	KeyType string `json:"kty"`
	Curve   string `json:"crv"`
	X       string `json:"x"`
	KeyID   string `json:"kid"`
	Alg     string `json:"alg"`
	Use     string `json:"use"`
}

// JWKSet is the document served at /.well-known/jwks.json.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// JWKS returns the verifier's public keys as a JWK Set.
func (v *Verifier) JWKS() JWKSet {
	set := JWKSet{Keys: make([]JWK, 0, len(v.order))}
	for _, kid := range v.order {
		set.Keys = append(set.Keys, JWK{
			KeyType: "OKP",
			Curve:   "Ed25519",
			X:       base64.RawURLEncoding.EncodeToString(v.keys[kid]),
			KeyID:   kid,
			Alg:     "EdDSA",
			Use:     "sig",
		})
	}
	return set
}
