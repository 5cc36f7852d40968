// Package jwtkeys holds MediaMesh's token keys: Ed25519 signing keys stored as PKCS#8
// PEM, EdDSA access tokens (golang-jwt/jwt/v5) minted with them, a verifier over a
// set of public keys, and the JWK Set that publishes those keys.
//
// Decisions:
//   - One algorithm, EdDSA over Ed25519: small keys, deterministic signatures, and no
//     algorithm-confusion surface (the verifier accepts no other "alg").
//   - A key's id ("kid") is derived from its public key (the first 16 characters of
//     base64url(sha256(public key))), so every instance given the same key file
//     names it the same way without coordination.
//   - The verifier holds a set of public keys so that two keys can be active during a
//     rotation: tokens minted with the old key keep verifying until they expire.
package jwtkeys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// DefaultKeyFileName is the name of the generated signing key under the data dir.
const DefaultKeyFileName = "jwt-signing-key.pem"

// KeyID returns the "kid" of a public key: the first 16 characters of the unpadded
// base64url encoding of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:])[:16]
}

// ParsePrivateKeyPEM parses a PEM block "PRIVATE KEY" holding a PKCS#8 Ed25519 key.
func ParsePrivateKeyPEM(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("parse signing key: no PEM block")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("parse signing key: PEM block %q, want \"PRIVATE KEY\" (PKCS#8)", block.Type)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse signing key: %w", err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse signing key: %T is not an Ed25519 key", key)
	}
	return priv, nil
}

// MarshalPrivateKeyPEM encodes priv as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal signing key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// LoadPrivateKey reads a PEM Ed25519 private key (PKCS#8) from path.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	priv, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return priv, nil
}

// LoadOrGenerate returns the signing key of a deployment. With keyFile set, the key
// is read from it (a missing file is an error: a configured key is never replaced
// silently). Without, the key is dataDir/jwt-signing-key.pem, generated and written
// with mode 0600 on first use.
//
// Generation is safe against several processes starting at once on the same data
// dir: each writes a temporary file and links it into place, and a process that
// loses the race reads the winner's key, so all of them sign with the same key.
func LoadOrGenerate(keyFile, dataDir string) (ed25519.PrivateKey, error) {
	if keyFile != "" {
		return LoadPrivateKey(keyFile)
	}
	if dataDir == "" {
		return nil, errors.New("signing key: neither a key file nor a data dir is configured")
	}
	path := filepath.Join(dataDir, DefaultKeyFileName)
	priv, err := LoadPrivateKey(path)
	if err == nil {
		return priv, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	data, err := MarshalPrivateKeyPEM(priv)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dataDir, ".jwt-signing-key-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	// Link fails when another process created the key first: then use that one.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return LoadPrivateKey(path)
		}
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	return priv, nil
}
