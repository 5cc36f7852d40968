// Package config is MediaMesh's one configuration struct, loaded from environment
// variables with a working default for the embedded mode.
//
// Every key is described once, in the table that Keys returns: its name, its default,
// what it means, how it is parsed and how it is shown. Load, `mediamesh serve --help`,
// the README's configuration table and the redacted form that is logged all come from
// that one table, so they cannot drift apart.
//
// Decisions:
//   - An empty variable counts as unset and takes the default, as shells and compose
//     files make "set but empty" and "unset" hard to tell apart.
//   - Load checks every key and every cross-key rule (esdb needs MEDIAMESH_ESDB_URL,
//     kafka needs brokers, …) and returns all problems at once, joined, each naming its
//     variable, so a deployment is fixed in one round trip.
//   - Secrets (passwords inside URLs, the S3 secret key, the Meilisearch key, the
//     CDN purge token) never appear in String, GoString, LogValue or a Load error.
//     Secret-only values use the Secret type, whose own formatting is redacted, so
//     even a stray %v of the field is safe.
//   - Keys that later parts of the system will use (search, blobs, Kafka, …) are
//     accepted and validated now so that a deployment's environment is checked in full
//     from the first release.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"
)

// EventStoreKind selects the event store adapter.
type EventStoreKind string

// Event store adapters.
const (
	EventStorePostgres EventStoreKind = "postgres"
	EventStoreESDB     EventStoreKind = "esdb"
)

// BusKind selects the message bus adapter.
type BusKind string

// Bus adapters.
const (
	BusPostgres BusKind = "postgres"
	BusKafka    BusKind = "kafka"
)

// SearchKind selects the search index adapter.
type SearchKind string

// Search adapters.
const (
	SearchPostgres    SearchKind = "postgres"
	SearchMeilisearch SearchKind = "meilisearch"
)

// BlobKind selects the blob storage adapter.
type BlobKind string

// Blob adapters.
const (
	BlobFS BlobKind = "fs"
	BlobS3 BlobKind = "s3"
)

// Secret is a configuration value that must never be printed. Its String, GoString
// and LogValue are redacted; Reveal returns the value for the one place that needs it.
type Secret string

const redacted = "[REDACTED]"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String returns "[REDACTED]" for a set secret and "" for an empty one, so a log still
// shows whether it was configured.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString is redacted like String, for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// LogValue is redacted like String.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText is redacted like String, so a JSON dump of a Config leaks nothing.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Redis is MEDIAMESH_REDIS_URL parsed: off, one URL, or cluster seed addresses.
type Redis struct {
	// Disabled is true for "off": caches stay in-process.
	Disabled bool
	// URL is set when the value is one redis:// or rediss:// URL (it may hold a
	// password: never log it, log Config instead).
	URL string
	// Addrs is set when the value is one or more host:port addresses; several
	// addresses mean Redis Cluster seed nodes.
	Addrs []string
}

// S3 holds the S3-compatible blob store settings (MEDIAMESH_BLOB=s3).
type S3 struct {
	Endpoint  string
	Bucket    string
	Region    string
	AccessKey string
	SecretKey Secret
	// PathStyle selects path-style requests (http://host/bucket/key). It defaults to
	// true because MinIO and most self-hosted services (the compose stack's MinIO
	// included) need it; AWS S3 still answers path-style requests, but set false
	// there to let the client choose virtual-hosted style.
	PathStyle bool
}

// Config is every setting of a MediaMesh process. Build it with Load.
type Config struct {
	// HTTPAddr is the listen address of the HTTP roles.
	HTTPAddr string
	// DatabaseURL is the primary PostgreSQL (event store, read-model writes). The
	// database is created when missing.
	DatabaseURL string
	// DatabaseReadURLs are read replicas for the query role (may be empty).
	DatabaseReadURLs []string
	// Redis is the cache / documents server, or Disabled.
	Redis Redis
	// EventStore selects the event store; ESDBURL is its URL for EventStoreESDB.
	EventStore EventStoreKind
	ESDBURL    string
	// Bus selects the bus; KafkaBrokers are host:port seeds for BusKafka.
	Bus          BusKind
	KafkaBrokers []string
	// Search selects the search index; MeiliURL and MeiliKey are for SearchMeilisearch.
	Search   SearchKind
	MeiliURL string
	MeiliKey Secret
	// Blob selects the blob store; S3 holds its settings for BlobS3.
	Blob BlobKind
	S3   S3
	// CDNBaseURL is the base of asset links; empty: served under /media/.
	CDNBaseURL string
	// CDNPurgeURL is the CDN's purge webhook (POST {"urls": [...]}) that the
	// thumbnail processor calls when a replaced image changes a rendition's
	// bytes; empty: nothing is purged. CDNPurgeToken, when set, is sent as
	// "Authorization: Bearer <token>".
	CDNPurgeURL   string
	CDNPurgeToken Secret
	// DataDir holds the embedded mode's local state (generated key, stored assets).
	DataDir string
	// JWTSigningKeyFile is the PEM Ed25519 private key. When the variable is unset it
	// is a file under DataDir and JWTGenerateKey is true: the key is generated on
	// first use. A configured file is never generated: every instance of a deployment
	// must share it, so a missing one is an error at start.
	JWTSigningKeyFile string
	JWTGenerateKey    bool
	// JWTVerifyKeyFiles are PEM files (public keys, or old private keys) whose keys
	// verify tokens besides the signing key's: the middle steps of a key rotation.
	// Every file must load at start.
	JWTVerifyKeyFiles []string
	// JWTIssuer and JWTAudience are the expected and minted iss and aud.
	JWTIssuer   string
	JWTAudience string
	// AccessTokenTTL is the lifetime of minted access tokens.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of each refresh token (sliding: every refresh
	// issues one valid this long). It is at least AccessTokenTTL.
	RefreshTokenTTL time.Duration
	// BcryptCost is the password hashing cost (10–12).
	BcryptCost int
	// LogLevel is the minimum level of the JSON logs.
	LogLevel slog.Level
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration
	// CommandBodyLimit, AssetBodyLimit and IngestMaxBytes are the per-route body
	// limits. AssetBodyLimit bounds the uploaded file itself (asset.Limits.MaxBytes);
	// the multipart body around it may be a little larger.
	CommandBodyLimit int64
	AssetBodyLimit   int64
	IngestMaxBytes   int64
	// AssetMaxPixels bounds an uploaded image's width × height, checked from its
	// header before any pixel is decoded (decompression bombs).
	AssetMaxPixels int64
	// ConsistencyWait bounds how long a read with a consistency token waits.
	ConsistencyWait time.Duration
	// TrustedProxies are the networks of the reverse proxies in front of the HTTP
	// roles, whose X-Forwarded-For is believed for the client IP (rate limits).
	// Prefixes are masked, and IPv4-mapped IPv6 prefixes are stored as IPv4, as the
	// HTTP layer compares unmapped peer addresses.
	TrustedProxies []netip.Prefix
	// Rate limits per client IP: requests per minute and burst, for register / login
	// / refresh together (Auth), POST /v1/plays (Plays) and the other public routes
	// (Public).
	RateAuthPerMin, RateAuthBurst     int
	RatePlaysPerMin, RatePlaysBurst   int
	RatePublicPerMin, RatePublicBurst int
}

// DefaultSigningKeyName is the signing key's file name under the data dir when
// MEDIAMESH_JWT_SIGNING_KEY_FILE is unset.
const DefaultSigningKeyName = "jwt-signing-key.pem"

// Error is one configuration problem, naming its variable. Load joins them.
type Error struct {
	Key     string
	Problem string
}

func (e *Error) Error() string { return e.Key + ": " + e.Problem }

func problem(key, format string, args ...any) error {
	return &Error{Key: key, Problem: fmt.Sprintf(format, args...)}
}

// Load reads every key through getenv (os.Getenv in main, a map in tests), applies
// the defaults, and validates. It returns every problem at once (errors.Join of
// *Error); the Config is meaningful only when the error is nil.
func Load(getenv func(string) string) (Config, error) {
	var c Config
	var errs []error
	failed := map[string]bool{}
	for _, s := range specs() {
		v := strings.TrimSpace(getenv(s.Name))
		if v == "" {
			v = s.Default
		}
		if err := s.set(&c, v); err != nil {
			errs = append(errs, problem(s.Name, "%s", err.Error()))
			failed[s.Name] = true
		}
	}
	// A key that is already wrong is not reported again as missing.
	for _, err := range c.crossCheck() {
		var ce *Error
		if errors.As(err, &ce) && failed[ce.Key] {
			continue
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// crossCheck applies the rules that involve more than one key.
func (c *Config) crossCheck() []error {
	var errs []error
	if c.EventStore == EventStoreESDB && c.ESDBURL == "" {
		errs = append(errs, problem(KeyESDBURL, "required when MEDIAMESH_EVENTSTORE=esdb"))
	}
	if c.Bus == BusKafka && len(c.KafkaBrokers) == 0 {
		errs = append(errs, problem(KeyKafkaBrokers, "required when MEDIAMESH_BUS=kafka"))
	}
	if c.Search == SearchMeilisearch && c.MeiliURL == "" {
		errs = append(errs, problem(KeyMeiliURL, "required when MEDIAMESH_SEARCH=meilisearch"))
	}
	if c.RefreshTokenTTL > 0 && c.AccessTokenTTL > c.RefreshTokenTTL {
		errs = append(errs, problem(KeyRefreshTokenTTL, "must be at least MEDIAMESH_ACCESS_TOKEN_TTL (%s)", c.AccessTokenTTL))
	}
	if c.Blob == BlobS3 {
		if c.S3.Endpoint == "" {
			errs = append(errs, problem(KeyS3Endpoint, "required when MEDIAMESH_BLOB=s3"))
		}
		if c.S3.Bucket == "" {
			errs = append(errs, problem(KeyS3Bucket, "required when MEDIAMESH_BLOB=s3"))
		}
		if (c.S3.AccessKey == "") != (c.S3.SecretKey == "") {
			errs = append(errs, problem(KeyS3SecretKey, "MEDIAMESH_S3_ACCESS_KEY and MEDIAMESH_S3_SECRET_KEY must be set together"))
		}
	}
	if c.CDNPurgeToken != "" && c.CDNPurgeURL == "" {
		errs = append(errs, problem(KeyCDNPurgeURL, "required when MEDIAMESH_CDN_PURGE_TOKEN is set (the token is sent to it)"))
	}
	return errs
}

// Unknown returns the MEDIAMESH_* variables of environ ("KEY=value" entries, as
// os.Environ returns) that are not configuration keys: usually a typo that would
// otherwise be silently ignored. Variables of the test tooling
// (MEDIAMESH_TEST_*) are not reported.
func Unknown(environ []string) []string {
	known := map[string]bool{}
	for _, k := range Keys() {
		known[k.Name] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "MEDIAMESH_") && !strings.HasPrefix(name, "MEDIAMESH_TEST_") && !known[name] {
			out = append(out, name)
		}
	}
	return out
}

// String lists every key with its effective value, secrets redacted, one
// "NAME=value" per line in the table's order.
func (c Config) String() string {
	var b strings.Builder
	for _, s := range specs() {
		b.WriteString(s.Name)
		b.WriteByte('=')
		b.WriteString(s.show(&c))
		b.WriteByte('\n')
	}
	return b.String()
}

// GoString is the redacted String, so %#v leaks nothing either.
func (c Config) GoString() string { return "config.Config{\n" + c.String() + "}" }

// MarshalJSON writes the redacted form, an object of variable name to value, so a
// JSON dump of a Config leaks nothing either.
func (c Config) MarshalJSON() ([]byte, error) {
	m := make(map[string]string, len(specs()))
	for _, s := range specs() {
		m[s.Name] = s.show(&c)
	}
	return json.Marshal(m)
}

// LogValue groups every key (lower case, without the MEDIAMESH_ prefix) with its
// redacted value.
func (c Config) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(specs()))
	for _, s := range specs() {
		attrs = append(attrs, slog.String(strings.ToLower(strings.TrimPrefix(s.Name, "MEDIAMESH_")), s.show(&c)))
	}
	return slog.GroupValue(attrs...)
}
