package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/mediamesh/mediamesh/command/accounts"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
)

// runToken mints an access token with the configured signing key and prints it
// alone on standard output, so `TOKEN=$(mediamesh token --role editor --subject me)`
// works. Logs go to standard error.
func runToken(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "token", "--role viewer|editor|admin --subject S [--ttl 15m]")
	role := fs.String("role", "", "role of the token: viewer, editor or admin (required)")
	subject := fs.String("subject", "", "subject (sub) of the token, e.g. an editor's id or name (required)")
	ttl := fs.Duration("ttl", 0, "lifetime of the token (default MEDIAMESH_ACCESS_TOKEN_TTL)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !accounts.ValidRole(*role) || *subject == "" || *ttl < 0 || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "mediamesh token: --role must be viewer, editor or admin, --subject is required, --ttl must not be negative")
		fs.Usage()
		return errUsage
	}
	cfg, _, err := setup(e)
	if err != nil {
		return err
	}
	if *ttl == 0 {
		*ttl = cfg.AccessTokenTTL
	}
	signer, err := newSigner(cfg)
	if err != nil {
		return err
	}
	tok, err := signer.Mint(*subject, *role, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(e.stdout, tok)
	return err
}

// signingKey loads the deployment's signing key, generating it under the data dir
// when no key file is configured.
func signingKey(cfg config.Config) (ed25519.PrivateKey, error) {
	keyFile := cfg.JWTSigningKeyFile
	if cfg.JWTGenerateKey {
		keyFile = "" // jwtkeys generates it under the data dir
	}
	key, err := jwtkeys.LoadOrGenerate(keyFile, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return key, nil
}

// newSigner returns a token signer with the deployment's signing key.
func newSigner(cfg config.Config) (*jwtkeys.Signer, error) {
	key, err := signingKey(cfg)
	if err != nil {
		return nil, err
	}
	return jwtkeys.NewSigner(key, cfg.JWTIssuer, cfg.JWTAudience)
}

// tokenTTLForTools is the lifetime of tokens the binary mints for itself (bench).
const tokenTTLForTools = time.Hour
