package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/accounts"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/ratelimit"
)

// refreshSweepEvery is how often expired refresh token families are deleted.
const refreshSweepEvery = 10 * time.Minute

// authWiring is what the HTTP roles need for bearer tokens, /v1/auth and the rate
// limits.
type authWiring struct {
	// verifier checks bearer tokens (with a verified-token cache) and publishes the
	// JWK Set: the signing key's public key and those of MEDIAMESH_JWT_VERIFY_KEY_FILES.
	verifier *jwtkeys.CachingVerifier
	accounts accounts.Handlers
	limiter  *ratelimit.Limiter
}

// newAuth builds the token verifier, the account use cases on PostgreSQL and the
// rate limiter (shared through Redis when it is configured, local otherwise), and
// starts the refresh token sweep. Everything it starts is closed with d.
func newAuth(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger, key ed25519.PrivateKey) (*authWiring, error) {
	signer, err := jwtkeys.NewSigner(key, cfg.JWTIssuer, cfg.JWTAudience)
	if err != nil {
		return nil, err
	}
	keys, err := jwtkeys.VerificationKeys(key, cfg.JWTVerifyKeyFiles)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.KeyJWTVerifyKeyFiles, err)
	}
	v, err := jwtkeys.NewVerifier(cfg.JWTIssuer, cfg.JWTAudience, keys)
	if err != nil {
		return nil, err
	}
	cv, err := jwtkeys.NewCachingVerifier(v, 0)
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, cv.Close)

	store := pginfra.NewAccountStore(d.pool)
	acc, err := accounts.NewHandlers(store, signer, accountsConfig(cfg))
	if err != nil {
		return nil, err
	}
	lim, err := ratelimit.New(d.redis, ratelimit.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	d.closers = append(d.closers, lim.Close)
	d.sweep(ctx, log, "refresh token sweeper", refreshSweepEvery, func(ctx context.Context, limit int) (int64, error) {
		n, err := store.DeleteExpiredRefreshTokens(ctx, time.Now(), limit)
		return int64(n), err
	})
	log.Info("auth ready", "verification_keys", len(keys), "rate_limits_shared", d.redis != nil)
	return &authWiring{verifier: cv, accounts: acc, limiter: lim}, nil
}

// accountsConfig is the account use cases' configuration.
func accountsConfig(cfg config.Config) accounts.Config {
	return accounts.Config{BcryptCost: cfg.BcryptCost, AccessTokenTTL: cfg.AccessTokenTTL, RefreshTokenTTL: cfg.RefreshTokenTTL}
}

// rateLimits are the configured per-client-IP limits.
func rateLimits(cfg config.Config) api.RateLimits {
	return api.RateLimits{
		Auth:   ratelimit.PerMinute(cfg.RateAuthPerMin, cfg.RateAuthBurst),
		Plays:  ratelimit.PerMinute(cfg.RatePlaysPerMin, cfg.RatePlaysBurst),
		Public: ratelimit.PerMinute(cfg.RatePublicPerMin, cfg.RatePublicBurst),
	}
}
