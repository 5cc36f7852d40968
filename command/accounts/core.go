package accounts

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/bcrypt"
)

// Defaults and bounds of Config.
const (
	DefaultBcryptCost      = 10
	MinBcryptCost          = 10
	MaxBcryptCost          = 12
	DefaultAccessTokenTTL  = 15 * time.Minute
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	// refreshTokenBytes is the entropy of a refresh token (256 bits).
	refreshTokenBytes = 32
	// RefreshTokenLen is the length of a refresh token as handed out (base64url of
	// 32 bytes, unpadded).
	RefreshTokenLen = 43
)

// Config tunes the use cases; the zero value of a field means its default.
type Config struct {
	// BcryptCost is the cost of new password hashes and of the dummy hash that login
	// compares against for unknown emails (10–12; MEDIAMESH_BCRYPT_COST). Cost 10
	// takes about 50 ms here, cost 12 about 190 ms.
	BcryptCost int
	// AccessTokenTTL is the lifetime of access tokens (15 min).
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of each refresh token (30 days). It is
	// sliding: each rotation issues a token valid for this long, so a session ends
	// after this long without use.
	RefreshTokenTTL time.Duration
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// AllowLowBcryptCost lets BcryptCost go down to bcrypt.MinCost (4). Tests set it
	// to stay fast under the race detector, which makes a cost-10 hash take ~0.7 s
	// here; the composition root never does.
	AllowLowBcryptCost bool
}

func (c Config) withDefaults() (Config, error) {
	if c.BcryptCost == 0 {
		c.BcryptCost = DefaultBcryptCost
	}
	lowest := MinBcryptCost
	if c.AllowLowBcryptCost {
		lowest = bcrypt.MinCost
	}
	if c.BcryptCost < lowest || c.BcryptCost > MaxBcryptCost {
		return c, fmt.Errorf("accounts: bcrypt cost %d is outside %d–%d", c.BcryptCost, lowest, MaxBcryptCost)
	}
	if c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if c.RefreshTokenTTL == 0 {
		c.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if c.AccessTokenTTL < 0 || c.RefreshTokenTTL < 0 {
		return c, errors.New("accounts: token lifetimes must be positive")
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// core is what every handler shares.
type core struct {
	store  AccountStore
	tokens AccessTokens
	cfg    Config
	// dummyHash is a bcrypt hash at the configured cost of a random password that no
	// one knows: login compares against it when the email has no account.
	dummyHash []byte
}

func newCore(store AccountStore, tokens AccessTokens, cfg Config) (*core, error) {
	if store == nil {
		return nil, errors.New("accounts: nil store")
	}
	if tokens == nil {
		return nil, errors.New("accounts: nil access token minter")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("accounts: dummy password: %w", err)
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte(base64.RawURLEncoding.EncodeToString(secret)), cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("accounts: dummy hash: %w", err)
	}
	return &core{store: store, tokens: tokens, cfg: cfg, dummyHash: dummy}, nil
}

// now is the clock in UTC at microseconds, the precision PostgreSQL stores.
func (c *core) now() time.Time { return c.cfg.Now().UTC().Truncate(time.Microsecond) }

// hashPassword hashes a validated password at the configured cost.
func (c *core) hashPassword(password string) ([]byte, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), c.cfg.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return h, nil
}

// newAccount validates and builds a new account with role; the password is hashed
// before anything is stored, so a duplicate email costs the same time as a new one.
func (c *core) newAccount(email, password, name, role string) (Account, error) {
	var fe fieldErrors
	email = NormalizeEmail(email)
	checkEmail(&fe, email)
	checkPassword(&fe, password)
	name = normName(&fe, name)
	checkRole(&fe, role)
	if err := fe.err(); err != nil {
		return Account{}, err
	}
	hash, err := c.hashPassword(password)
	if err != nil {
		return Account{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Account{}, fmt.Errorf("new account id: %w", err)
	}
	now := c.now()
	return Account{ID: id.String(), Email: email, Name: name, Role: role, PasswordHash: hash,
		CreatedAt: now, UpdatedAt: now}, nil
}

// issue mints an access token for a and pairs it with refresh, a new refresh token.
func (c *core) issue(a Account, refresh string) (Tokens, error) {
	access, err := c.tokens.Mint(a.ID, a.Role, c.cfg.AccessTokenTTL)
	if err != nil {
		return Tokens{}, fmt.Errorf("mint access token: %w", err)
	}
	return Tokens{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresIn: c.cfg.AccessTokenTTL}, nil
}

// newRefreshToken returns a fresh opaque refresh token and its hash.
func newRefreshToken() (string, []byte, error) {
	b := make([]byte, refreshTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("new refresh token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	return tok, HashRefreshToken(tok), nil
}

// HashRefreshToken is the stored form of a refresh token: its SHA-256. A fast hash
// is right here (unlike for passwords): the token has 256 bits of entropy, so the
// hash cannot be reversed by guessing.
func HashRefreshToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// wellFormedRefreshToken reports whether token could be one of ours, so that junk
// is refused without a database round trip.
func wellFormedRefreshToken(token string) bool {
	if len(token) != RefreshTokenLen {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(token)
	return err == nil
}
