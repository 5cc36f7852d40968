package config

import (
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Names of the configuration variables, for messages and tests.
const (
	KeyHTTPAddr          = "MEDIAMESH_HTTP_ADDR"
	KeyDatabaseURL       = "MEDIAMESH_DATABASE_URL"
	KeyDatabaseReadURLs  = "MEDIAMESH_DATABASE_READ_URLS"
	KeyRedisURL          = "MEDIAMESH_REDIS_URL"
	KeyEventStore        = "MEDIAMESH_EVENTSTORE"
	KeyESDBURL           = "MEDIAMESH_ESDB_URL"
	KeyBus               = "MEDIAMESH_BUS"
	KeyKafkaBrokers      = "MEDIAMESH_KAFKA_BROKERS"
	KeySearch            = "MEDIAMESH_SEARCH"
	KeyMeiliURL          = "MEDIAMESH_MEILI_URL"
	KeyMeiliKey          = "MEDIAMESH_MEILI_KEY"
	KeyBlob              = "MEDIAMESH_BLOB"
	KeyS3Endpoint        = "MEDIAMESH_S3_ENDPOINT"
	KeyS3Bucket          = "MEDIAMESH_S3_BUCKET"
	KeyS3Region          = "MEDIAMESH_S3_REGION"
	KeyS3AccessKey       = "MEDIAMESH_S3_ACCESS_KEY"
	KeyS3SecretKey       = "MEDIAMESH_S3_SECRET_KEY"
	KeyS3PathStyle       = "MEDIAMESH_S3_PATH_STYLE"
	KeyCDNBaseURL        = "MEDIAMESH_CDN_BASE_URL"
	KeyCDNPurgeURL       = "MEDIAMESH_CDN_PURGE_URL"
	KeyCDNPurgeToken     = "MEDIAMESH_CDN_PURGE_TOKEN"
	KeyDataDir           = "MEDIAMESH_DATA_DIR"
	KeyJWTSigningKeyFile = "MEDIAMESH_JWT_SIGNING_KEY_FILE"
	KeyJWTIssuer         = "MEDIAMESH_JWT_ISSUER"
	KeyJWTAudience       = "MEDIAMESH_JWT_AUDIENCE"
	KeyAccessTokenTTL    = "MEDIAMESH_ACCESS_TOKEN_TTL"
	KeyBcryptCost        = "MEDIAMESH_BCRYPT_COST"
	KeyLogLevel          = "MEDIAMESH_LOG_LEVEL"
	KeyShutdownTimeout   = "MEDIAMESH_SHUTDOWN_TIMEOUT"
	KeyCommandBodyLimit  = "MEDIAMESH_COMMAND_BODY_LIMIT"
	KeyAssetBodyLimit    = "MEDIAMESH_ASSET_BODY_LIMIT"
	KeyAssetMaxPixels    = "MEDIAMESH_ASSET_MAX_PIXELS"
	KeyIngestMaxBytes    = "MEDIAMESH_INGEST_MAX_BYTES"
	KeyConsistencyWait   = "MEDIAMESH_CONSISTENCY_WAIT"
	KeyJWTVerifyKeyFiles = "MEDIAMESH_JWT_VERIFY_KEY_FILES"
	KeyRefreshTokenTTL   = "MEDIAMESH_REFRESH_TOKEN_TTL"
	KeyTrustedProxies    = "MEDIAMESH_TRUSTED_PROXIES"
	KeyRateAuthPerMin    = "MEDIAMESH_RATE_AUTH_PER_MIN"
	KeyRateAuthBurst     = "MEDIAMESH_RATE_AUTH_BURST"
	KeyRatePlaysPerMin   = "MEDIAMESH_RATE_PLAYS_PER_MIN"
	KeyRatePlaysBurst    = "MEDIAMESH_RATE_PLAYS_BURST"
	KeyRatePublicPerMin  = "MEDIAMESH_RATE_PUBLIC_PER_MIN"
	KeyRatePublicBurst   = "MEDIAMESH_RATE_PUBLIC_BURST"
)

// Key describes one configuration variable.
type Key struct {
	Name string
	// Default is the value used when the variable is unset or empty; "" means empty.
	Default string
	// DefaultText is how the default is described when it is not a literal value
	// (for example "generated under the data dir"); empty means Default.
	DefaultText string
	Meaning     string
	// Secret keys are shown redacted wherever the configuration is printed.
	Secret bool
}

// spec is a Key with how it is parsed into, and shown from, a Config.
type spec struct {
	Key
	set  func(c *Config, v string) error
	show func(c *Config) string
}

// specs is the one table of keys. It is built on each call (no package state).
// Order matters in one place only: MEDIAMESH_DATA_DIR comes before
// MEDIAMESH_JWT_SIGNING_KEY_FILE, whose default lives under it.
func specs() []spec {
	return []spec{
		{Key{Name: KeyHTTPAddr, Default: ":8080", Meaning: "listen address of the HTTP roles"},
			func(c *Config, v string) (err error) { c.HTTPAddr, err = parseListenAddr(v); return },
			func(c *Config) string { return c.HTTPAddr }},
		{Key{Name: KeyDatabaseURL, Default: "postgres://postgres@127.0.0.1:5432/mediamesh?sslmode=disable", Meaning: "primary (event store, read-model writes); the database is created if missing"},
			func(c *Config, v string) (err error) { c.DatabaseURL, err = parsePostgresURL(v); return },
			func(c *Config) string { return redactURL(c.DatabaseURL) }},
		{Key{Name: KeyDatabaseReadURLs, Meaning: "comma-separated read replicas for the query role"},
			func(c *Config, v string) (err error) {
				c.DatabaseReadURLs, err = parseList(v, parsePostgresURL)
				return
			},
			func(c *Config) string { return joinMap(c.DatabaseReadURLs, redactURL) }},
		{Key{Name: KeyRedisURL, Default: "redis://127.0.0.1:6379/0", Meaning: "one URL, or comma-separated cluster node addresses; `off` disables Redis"},
			func(c *Config, v string) (err error) { c.Redis, err = parseRedis(v); return },
			func(c *Config) string { return showRedis(c.Redis) }},
		{Key{Name: KeyEventStore, Default: "postgres", Meaning: "`postgres` or `esdb` (`MEDIAMESH_ESDB_URL`)"},
			func(c *Config, v string) (err error) {
				c.EventStore, err = parseEnum(v, EventStorePostgres, EventStoreESDB)
				return
			},
			func(c *Config) string { return string(c.EventStore) }},
		{Key{Name: KeyESDBURL, Meaning: "EventStoreDB / KurrentDB connection string: `esdb://host:2113?tls=false` or `esdb+discover://…`"},
			func(c *Config, v string) (err error) { c.ESDBURL, err = parseESDBURL(v); return },
			func(c *Config) string { return redactURL(c.ESDBURL) }},
		{Key{Name: KeyBus, Default: "postgres", Meaning: "`postgres` (durable, in the primary database) or `kafka` (`MEDIAMESH_KAFKA_BROKERS`)"},
			func(c *Config, v string) (err error) { c.Bus, err = parseEnum(v, BusPostgres, BusKafka); return },
			func(c *Config) string { return string(c.Bus) }},
		{Key{Name: KeyKafkaBrokers, Meaning: "comma-separated Kafka bootstrap brokers (host:port)"},
			func(c *Config, v string) (err error) { c.KafkaBrokers, err = parseList(v, parseHostPort); return },
			func(c *Config) string { return strings.Join(c.KafkaBrokers, ",") }},
		{Key{Name: KeySearch, Default: "postgres", Meaning: "`postgres` or `meilisearch` (`MEDIAMESH_MEILI_URL`, `MEDIAMESH_MEILI_KEY`)"},
			func(c *Config, v string) (err error) {
				c.Search, err = parseEnum(v, SearchPostgres, SearchMeilisearch)
				return
			},
			func(c *Config) string { return string(c.Search) }},
		{Key{Name: KeyMeiliURL, Meaning: "Meilisearch base URL (http or https)"},
			func(c *Config, v string) (err error) { c.MeiliURL, err = parseHTTPURL(v); return },
			func(c *Config) string { return redactURL(c.MeiliURL) }},
		{Key{Name: KeyMeiliKey, Meaning: "Meilisearch API key", Secret: true},
			func(c *Config, v string) error { c.MeiliKey = Secret(v); return nil },
			func(c *Config) string { return c.MeiliKey.String() }},
		{Key{Name: KeyBlob, Default: "fs", Meaning: "`fs` (under the data dir) or `s3` (`MEDIAMESH_S3_*`)"},
			func(c *Config, v string) (err error) { c.Blob, err = parseEnum(v, BlobFS, BlobS3); return },
			func(c *Config) string { return string(c.Blob) }},
		{Key{Name: KeyS3Endpoint, Meaning: "S3-compatible endpoint URL (http or https)"},
			func(c *Config, v string) (err error) { c.S3.Endpoint, err = parseHTTPURL(v); return },
			func(c *Config) string { return redactURL(c.S3.Endpoint) }},
		{Key{Name: KeyS3Bucket, Meaning: "bucket of stored assets"},
			func(c *Config, v string) error { c.S3.Bucket = v; return nil },
			func(c *Config) string { return c.S3.Bucket }},
		{Key{Name: KeyS3Region, Default: "us-east-1", Meaning: "S3 region"},
			func(c *Config, v string) error { c.S3.Region = v; return nil },
			func(c *Config) string { return c.S3.Region }},
		{Key{Name: KeyS3AccessKey, Meaning: "S3 access key id"},
			func(c *Config, v string) error { c.S3.AccessKey = v; return nil },
			func(c *Config) string { return c.S3.AccessKey }},
		{Key{Name: KeyS3SecretKey, Meaning: "S3 secret access key", Secret: true},
			func(c *Config, v string) error { c.S3.SecretKey = Secret(v); return nil },
			func(c *Config) string { return c.S3.SecretKey.String() }},
		{Key{Name: KeyS3PathStyle, Default: "true", Meaning: "path-style S3 requests (`http://host/bucket/key`), as MinIO and most self-hosted services need; `false` lets the client choose (virtual-hosted style on AWS)"},
			func(c *Config, v string) (err error) { c.S3.PathStyle, err = parseBool(v); return },
			func(c *Config) string { return strconv.FormatBool(c.S3.PathStyle) }},
		{Key{Name: KeyCDNBaseURL, Meaning: "base URL of asset links; empty: served by MediaMesh under `/media/`"},
			func(c *Config, v string) (err error) { c.CDNBaseURL, err = parseHTTPURL(v); return },
			func(c *Config) string { return redactURL(c.CDNBaseURL) }},
		{Key{Name: KeyCDNPurgeURL, Meaning: "CDN purge webhook (http or https): the thumbnail processor POSTs `{\"urls\": [...]}` (the replaced renditions' URLs, under `MEDIAMESH_CDN_BASE_URL`) to it when an image is replaced; empty: no purge. Put credentials in `MEDIAMESH_CDN_PURGE_TOKEN`, not in this URL, which failures log"},
			func(c *Config, v string) (err error) { c.CDNPurgeURL, err = parseHTTPURL(v); return },
			func(c *Config) string { return redactURL(c.CDNPurgeURL) }},
		{Key{Name: KeyCDNPurgeToken, Meaning: "sent to the purge webhook as `Authorization: Bearer …`; empty: no Authorization header", Secret: true},
			func(c *Config, v string) error { c.CDNPurgeToken = Secret(v); return nil },
			func(c *Config) string { return c.CDNPurgeToken.String() }},
		{Key{Name: KeyDataDir, Default: ".mediamesh", Meaning: "local state of the embedded mode: a generated signing key, stored assets"},
			func(c *Config, v string) error { c.DataDir = filepath.Clean(v); return nil },
			func(c *Config) string { return c.DataDir }},
		{Key{Name: KeyJWTSigningKeyFile, DefaultText: "generated under the data dir", Meaning: "PEM Ed25519 private key; every instance of a deployment must be given the same one"},
			func(c *Config, v string) error {
				if v == "" {
					c.JWTSigningKeyFile = filepath.Join(c.DataDir, DefaultSigningKeyName)
					c.JWTGenerateKey = true
					return nil
				}
				c.JWTSigningKeyFile = filepath.Clean(v)
				return nil
			},
			func(c *Config) string { return c.JWTSigningKeyFile }},
		{Key{Name: KeyJWTVerifyKeyFiles, Meaning: "comma-separated PEM files (public keys, or old private keys) that still verify tokens: the middle steps of a key rotation; each must load at start"},
			func(c *Config, v string) (err error) { c.JWTVerifyKeyFiles, err = parseList(v, parsePath); return },
			func(c *Config) string { return strings.Join(c.JWTVerifyKeyFiles, ",") }},
		{Key{Name: KeyJWTIssuer, Default: "mediamesh", Meaning: "expected and minted `iss`"},
			func(c *Config, v string) error { c.JWTIssuer = v; return nil },
			func(c *Config) string { return c.JWTIssuer }},
		{Key{Name: KeyJWTAudience, Default: "mediamesh", Meaning: "expected and minted `aud`"},
			func(c *Config, v string) error { c.JWTAudience = v; return nil },
			func(c *Config) string { return c.JWTAudience }},
		{Key{Name: KeyAccessTokenTTL, Default: "15m", Meaning: "lifetime of access tokens (1m–24h)"},
			func(c *Config, v string) (err error) {
				c.AccessTokenTTL, err = parseDuration(v, time.Minute, 24*time.Hour)
				return
			},
			func(c *Config) string { return c.AccessTokenTTL.String() }},
		{Key{Name: KeyRefreshTokenTTL, Default: "720h", Meaning: "lifetime of each refresh token, renewed by every refresh (1h–8760h, at least the access token's)"},
			func(c *Config, v string) (err error) {
				c.RefreshTokenTTL, err = parseDuration(v, time.Hour, 8760*time.Hour)
				return
			},
			func(c *Config) string { return c.RefreshTokenTTL.String() }},
		{Key{Name: KeyBcryptCost, Default: "10", Meaning: "10–12"},
			func(c *Config, v string) (err error) { c.BcryptCost, err = parseInt(v, 10, 12); return },
			func(c *Config) string { return strconv.Itoa(c.BcryptCost) }},
		{Key{Name: KeyLogLevel, Default: "info", Meaning: "`debug`, `info`, `warn` or `error` (JSON logs on standard error)"},
			func(c *Config, v string) (err error) { c.LogLevel, err = parseLevel(v); return },
			func(c *Config) string { return strings.ToLower(c.LogLevel.String()) }},
		{Key{Name: KeyShutdownTimeout, Default: "15s", Meaning: "how long a graceful shutdown may take (1s–10m)"},
			func(c *Config, v string) (err error) {
				c.ShutdownTimeout, err = parseDuration(v, time.Second, 10*time.Minute)
				return
			},
			func(c *Config) string { return c.ShutdownTimeout.String() }},
		{Key{Name: KeyCommandBodyLimit, Default: "1MiB", Meaning: "largest command body (413 above)"},
			func(c *Config, v string) (err error) { c.CommandBodyLimit, err = parseBytes(v); return },
			func(c *Config) string { return formatBytes(c.CommandBodyLimit) }},
		{Key{Name: KeyAssetBodyLimit, Default: "20MiB", Meaning: "largest uploaded asset file (413 above; the multipart body may carry 64 KiB more of fields)"},
			func(c *Config, v string) (err error) { c.AssetBodyLimit, err = parseBytes(v); return },
			func(c *Config) string { return formatBytes(c.AssetBodyLimit) }},
		{Key{Name: KeyAssetMaxPixels, Default: "40000000", Meaning: "most pixels (width × height) of an uploaded image, read from its header before any pixel is decoded (422 above; 1–400000000; each side is at most 20,000 px)"},
			func(c *Config, v string) (err error) {
				n, err := parseInt(v, 1, maxAssetPixels)
				c.AssetMaxPixels = int64(n)
				return err
			},
			func(c *Config) string { return strconv.FormatInt(c.AssetMaxPixels, 10) }},
		{Key{Name: KeyIngestMaxBytes, Default: "1GiB", Meaning: "largest ingest feed (streamed; 413 above)"},
			func(c *Config, v string) (err error) { c.IngestMaxBytes, err = parseBytes(v); return },
			func(c *Config) string { return formatBytes(c.IngestMaxBytes) }},
		{Key{Name: KeyConsistencyWait, Default: "2s", Meaning: "how long a read with `X-Consistency-Token` waits before a 503 (0–30s)"},
			func(c *Config, v string) (err error) {
				c.ConsistencyWait, err = parseDuration(v, 0, 30*time.Second)
				return
			},
			func(c *Config) string { return c.ConsistencyWait.String() }},
		{Key{Name: KeyTrustedProxies, Meaning: "comma-separated CIDRs of the reverse proxies in front (a bare IP is one address); only their `X-Forwarded-For` names the client IP, and only their `X-Forwarded-Proto` and `X-Forwarded-Host` the base of asset URLs"},
			func(c *Config, v string) (err error) { c.TrustedProxies, err = parseProxies(v); return },
			func(c *Config) string { return joinPrefixes(c.TrustedProxies) }},
		rateSpec(KeyRateAuthPerMin, "100", "register, login and refresh together: requests per minute per client IP", func(c *Config) *int { return &c.RateAuthPerMin }),
		rateSpec(KeyRateAuthBurst, "100", "burst of the auth limit", func(c *Config) *int { return &c.RateAuthBurst }),
		rateSpec(KeyRatePlaysPerMin, "600", "`POST /v1/plays`: requests per minute per client IP", func(c *Config) *int { return &c.RatePlaysPerMin }),
		rateSpec(KeyRatePlaysBurst, "100", "burst of the plays limit", func(c *Config) *int { return &c.RatePlaysBurst }),
		rateSpec(KeyRatePublicPerMin, "1200", "other public routes (discovery, the JWK Set): requests per minute per client IP", func(c *Config) *int { return &c.RatePublicPerMin }),
		rateSpec(KeyRatePublicBurst, "300", "burst of the public limit", func(c *Config) *int { return &c.RatePublicBurst }),
	}
}

// maxAssetPixels bounds MEDIAMESH_ASSET_MAX_PIXELS: 20,000 × 20,000, the largest
// image the per-side limit (asset.DefaultMaxSide) lets through anyway.
const maxAssetPixels = 400_000_000

// maxRate bounds the rate limit keys: beyond a million a minute a limit stops
// limiting anything, and a typo of extra zeros is more likely than the intent.
const maxRate = 1_000_000

// rateSpec is the spec of one rate limit number (1 to maxRate).
func rateSpec(name, def, meaning string, field func(c *Config) *int) spec {
	return spec{Key{Name: name, Default: def, Meaning: meaning + fmt.Sprintf(" (1–%d)", maxRate)},
		func(c *Config, v string) (err error) { *field(c), err = parseInt(v, 1, maxRate); return },
		func(c *Config) string { return strconv.Itoa(*field(c)) }}
}

// Keys returns the table of configuration keys, in a stable order.
func Keys() []Key {
	s := specs()
	out := make([]Key, len(s))
	for i := range s {
		out[i] = s[i].Key
	}
	return out
}

// defaultText is a key's default as a person reads it.
func (k Key) defaultText() string {
	switch {
	case k.DefaultText != "":
		return k.DefaultText
	case k.Default == "":
		return "empty"
	default:
		return k.Default
	}
}

// WriteHelp prints the key table for `serve --help`: name, default, meaning.
func WriteHelp(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, k := range Keys() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k.Name, k.defaultText(), strings.ReplaceAll(k.Meaning, "`", ""))
	}
	return tw.Flush()
}

// Markdown returns the key table as the Markdown table the README embeds; a test
// keeps the README in sync with it.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, k := range Keys() {
		def := "`" + k.Default + "`"
		switch {
		case k.DefaultText != "":
			def = k.DefaultText
		case k.Default == "":
			def = "empty"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", k.Name, def, k.Meaning)
	}
	return b.String()
}
