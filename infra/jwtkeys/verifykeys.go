package jwtkeys

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Key rotation. The deployment's signing key (MEDIAMESH_JWT_SIGNING_KEY_FILE) signs;
// the verifier also accepts the keys of MEDIAMESH_JWT_VERIFY_KEY_FILES, so a
// rotation goes: (1) give every instance the new key as an extra verification key
// and roll out; (2) make the new key the signing key and the old one an extra
// verification key, roll out; (3) after the access token lifetime, drop the old key.
// At every step, every instance accepts every token any instance mints, and the JWK
// Set publishes every key that verifies.

// MarshalPublicKeyPEM encodes pub as a PKIX "PUBLIC KEY" PEM block: the form to hand
// to other instances (or services) that only verify.
func MarshalPublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParseVerificationKeyPEM returns the Ed25519 public key in data: a PKIX "PUBLIC
// KEY" block, or a PKCS#8 "PRIVATE KEY" block (an old signing key file, of which
// only the public half is kept).
func ParseVerificationKeyPEM(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("parse verification key: no PEM block")
	}
	switch block.Type {
	case "PUBLIC KEY":
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse verification key: %w", err)
		}
		pub, ok := key.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("parse verification key: %T is not an Ed25519 key", key)
		}
		return pub, nil
	case "PRIVATE KEY":
		priv, err := ParsePrivateKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("parse verification key: %w", err)
		}
		return priv.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("parse verification key: PEM block %q, want \"PUBLIC KEY\" or \"PRIVATE KEY\"", block.Type)
}

// VerificationKeys returns the public keys a deployment's verifier accepts: the
// signing key's first, then those of extraFiles (MEDIAMESH_JWT_VERIFY_KEY_FILES),
// each a PEM public key or an old PEM private key. Every file must load: a
// configured key that is silently missing would log users out at the next rotation
// step.
func VerificationKeys(signing ed25519.PrivateKey, extraFiles []string) ([]ed25519.PublicKey, error) {
	if len(signing) != ed25519.PrivateKeySize {
		return nil, errors.New("verification keys: invalid Ed25519 signing key")
	}
	keys := []ed25519.PublicKey{signing.Public().(ed25519.PublicKey)}
	var errs []error
	for _, path := range extraFiles {
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("read verification key: %w", err))
			continue
		}
		pub, err := ParseVerificationKeyPEM(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		keys = append(keys, pub)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return keys, nil
}
