package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// problemKeys returns the sorted variable names that err's problems name.
func problemKeys(t *testing.T, err error) []string {
	t.Helper()
	var keys []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("problem %v is not a *config.Error", e)
		}
		keys = append(keys, ce.Key)
	}
	if err != nil {
		walk(err)
	}
	sort.Strings(keys)
	return keys
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(env(nil))
	if err != nil {
		t.Fatalf("Load with no variables: %v", err)
	}
	want := Config{
		HTTPAddr:          ":8080",
		DatabaseURL:       "postgres://postgres@127.0.0.1:5432/mediamesh?sslmode=disable",
		Redis:             Redis{URL: "redis://127.0.0.1:6379/0"},
		EventStore:        EventStorePostgres,
		Bus:               BusPostgres,
		Search:            SearchPostgres,
		Blob:              BlobFS,
		S3:                S3{Region: "us-east-1", PathStyle: true},
		DataDir:           ".mediamesh",
		JWTSigningKeyFile: ".mediamesh/" + DefaultSigningKeyName,
		JWTGenerateKey:    true,
		JWTIssuer:         "mediamesh",
		JWTAudience:       "mediamesh",
		AccessTokenTTL:    15 * time.Minute,
		RefreshTokenTTL:   720 * time.Hour,
		BcryptCost:        10,
		LogLevel:          slog.LevelInfo,
		ShutdownTimeout:   15 * time.Second,
		CommandBodyLimit:  1 << 20,
		AssetBodyLimit:    20 << 20,
		AssetMaxPixels:    40_000_000,
		IngestMaxBytes:    1 << 30,
		ConsistencyWait:   2 * time.Second,
		RateAuthPerMin:    100,
		RateAuthBurst:     100,
		RatePlaysPerMin:   600,
		RatePlaysBurst:    100,
		RatePublicPerMin:  1200,
		RatePublicBurst:   300,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %#v\nwant %#v", c, want)
		gv, wv := reflect.ValueOf(c), reflect.ValueOf(want)
		for i := range gv.NumField() {
			if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Errorf("field %s: got %v want %v", gv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface())
			}
		}
	}
}

func TestLoadValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{"esdb with url", map[string]string{KeyEventStore: "esdb", KeyESDBURL: "esdb://admin:changeit@127.0.0.1:2113?tls=false"},
			func(t *testing.T, c Config) {
				if c.EventStore != EventStoreESDB || c.ESDBURL == "" {
					t.Errorf("got %q %q", c.EventStore, c.ESDBURL)
				}
			}},
		{"kafka brokers trimmed", map[string]string{KeyBus: "KAFKA", KeyKafkaBrokers: "k1:9092, k2:9092,"},
			func(t *testing.T, c Config) {
				if c.Bus != BusKafka || !slices.Equal(c.KafkaBrokers, []string{"k1:9092", "k2:9092"}) {
					t.Errorf("got %q %q", c.Bus, c.KafkaBrokers)
				}
			}},
		{"redis off", map[string]string{KeyRedisURL: "off"},
			func(t *testing.T, c Config) {
				if !c.Redis.Disabled {
					t.Errorf("got %+v", c.Redis)
				}
			}},
		{"redis cluster", map[string]string{KeyRedisURL: "r1:7000,r2:7001,r3:7002"},
			func(t *testing.T, c Config) {
				if len(c.Redis.Addrs) != 3 || c.Redis.URL != "" {
					t.Errorf("got %+v", c.Redis)
				}
			}},
		{"read replicas", map[string]string{KeyDatabaseReadURLs: "postgres://u@r1/db,postgres://u@r2:5433/db"},
			func(t *testing.T, c Config) {
				if len(c.DatabaseReadURLs) != 2 {
					t.Errorf("got %q", c.DatabaseReadURLs)
				}
			}},
		{"meilisearch", map[string]string{KeySearch: "meilisearch", KeyMeiliURL: "http://127.0.0.1:7700/", KeyMeiliKey: "k"},
			func(t *testing.T, c Config) {
				if c.MeiliURL != "http://127.0.0.1:7700" || c.MeiliKey.Reveal() != "k" {
					t.Errorf("got %q %q", c.MeiliURL, c.MeiliKey.Reveal())
				}
			}},
		{"s3", map[string]string{KeyBlob: "s3", KeyS3Endpoint: "http://minio:9000", KeyS3Bucket: "media", KeyS3AccessKey: "a", KeyS3SecretKey: "s"},
			func(t *testing.T, c Config) {
				if c.S3.SecretKey.Reveal() != "s" || c.S3.Bucket != "media" {
					t.Errorf("got %+v", c.S3)
				}
			}},
		{"s3 virtual-hosted style", map[string]string{KeyBlob: "s3", KeyS3Endpoint: "https://s3.eu-west-1.amazonaws.com", KeyS3Bucket: "media", KeyS3PathStyle: "false"},
			func(t *testing.T, c Config) {
				if c.S3.PathStyle {
					t.Errorf("path style %v, want false", c.S3.PathStyle)
				}
				if !strings.Contains(c.String(), KeyS3PathStyle+"=false\n") {
					t.Errorf("String shows:\n%s", c)
				}
			}},
		{"s3 path style spelled TRUE", map[string]string{KeyS3PathStyle: "TRUE"},
			func(t *testing.T, c Config) {
				if !c.S3.PathStyle {
					t.Error("path style false")
				}
			}},
		{"cdn purge webhook with a token", map[string]string{KeyCDNBaseURL: "https://cdn.example.com/", KeyCDNPurgeURL: "https://api.cdn.example.com/purge", KeyCDNPurgeToken: "tok"},
			func(t *testing.T, c Config) {
				if c.CDNBaseURL != "https://cdn.example.com" || c.CDNPurgeURL != "https://api.cdn.example.com/purge" || c.CDNPurgeToken.Reveal() != "tok" {
					t.Errorf("got %q %q %q", c.CDNBaseURL, c.CDNPurgeURL, c.CDNPurgeToken.Reveal())
				}
			}},
		{"cdn purge webhook without a token", map[string]string{KeyCDNPurgeURL: "http://127.0.0.1:9999/purge"},
			func(t *testing.T, c Config) {
				if c.CDNPurgeURL == "" || c.CDNPurgeToken != "" {
					t.Errorf("got %q %q", c.CDNPurgeURL, c.CDNPurgeToken)
				}
			}},
		{"asset limits", map[string]string{KeyAssetMaxPixels: "12000000", KeyAssetBodyLimit: "8MiB"},
			func(t *testing.T, c Config) {
				if c.AssetMaxPixels != 12_000_000 || c.AssetBodyLimit != 8<<20 {
					t.Errorf("got %d pixels, %d bytes", c.AssetMaxPixels, c.AssetBodyLimit)
				}
			}},
		{"configured key file is not generated", map[string]string{KeyJWTSigningKeyFile: "/etc/mediamesh/key.pem", KeyDataDir: "/var/lib/mm"},
			func(t *testing.T, c Config) {
				if c.JWTGenerateKey || c.JWTSigningKeyFile != "/etc/mediamesh/key.pem" {
					t.Errorf("got %q generate=%v", c.JWTSigningKeyFile, c.JWTGenerateKey)
				}
			}},
		{"default key file under the data dir", map[string]string{KeyDataDir: "/var/lib/mm/"},
			func(t *testing.T, c Config) {
				if !c.JWTGenerateKey || c.JWTSigningKeyFile != "/var/lib/mm/"+DefaultSigningKeyName {
					t.Errorf("got %q generate=%v", c.JWTSigningKeyFile, c.JWTGenerateKey)
				}
			}},
		{"sizes and durations", map[string]string{KeyCommandBodyLimit: "512KiB", KeyAssetBodyLimit: "5000000", KeyIngestMaxBytes: "2GB", KeyShutdownTimeout: "1m", KeyConsistencyWait: "0s", KeyLogLevel: "DEBUG", KeyBcryptCost: "12"},
			func(t *testing.T, c Config) {
				if c.CommandBodyLimit != 512<<10 || c.AssetBodyLimit != 5e6 || c.IngestMaxBytes != 2e9 ||
					c.ShutdownTimeout != time.Minute || c.ConsistencyWait != 0 || c.LogLevel != slog.LevelDebug || c.BcryptCost != 12 {
					t.Errorf("got %+v", c)
				}
			}},
		{"verify key files cleaned", map[string]string{KeyJWTVerifyKeyFiles: "/etc/mm/old.pem, ./keys//next.pub.pem,"},
			func(t *testing.T, c Config) {
				if !slices.Equal(c.JWTVerifyKeyFiles, []string{"/etc/mm/old.pem", "keys/next.pub.pem"}) {
					t.Errorf("got %q", c.JWTVerifyKeyFiles)
				}
			}},
		{"refresh ttl equal to the access ttl", map[string]string{KeyRefreshTokenTTL: "1h", KeyAccessTokenTTL: "60m"},
			func(t *testing.T, c Config) {
				if c.RefreshTokenTTL != time.Hour {
					t.Errorf("got %s", c.RefreshTokenTTL)
				}
			}},
		{"trusted proxies", map[string]string{KeyTrustedProxies: "10.0.0.0/8, 192.168.1.7,fd00::/8, 2001:db8::1 ,::ffff:172.16.0.0/108,10.1.2.3/16"},
			func(t *testing.T, c Config) {
				want := []netip.Prefix{
					netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
					netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("2001:db8::1/128"),
					netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("10.1.0.0/16"),
				}
				if !slices.Equal(c.TrustedProxies, want) {
					t.Errorf("got %v, want %v", c.TrustedProxies, want)
				}
				if got := c.String(); !strings.Contains(got, KeyTrustedProxies+"=10.0.0.0/8,192.168.1.7/32,fd00::/8,2001:db8::1/128,172.16.0.0/12,10.1.0.0/16\n") {
					t.Errorf("String shows:\n%s", got)
				}
			}},
		{"rate limits", map[string]string{KeyRateAuthPerMin: "5", KeyRateAuthBurst: "2", KeyRatePlaysPerMin: "1", KeyRatePlaysBurst: "1000000", KeyRatePublicPerMin: "60000", KeyRatePublicBurst: "10"},
			func(t *testing.T, c Config) {
				got := []int{c.RateAuthPerMin, c.RateAuthBurst, c.RatePlaysPerMin, c.RatePlaysBurst, c.RatePublicPerMin, c.RatePublicBurst}
				if !slices.Equal(got, []int{5, 2, 1, 1000000, 60000, 10}) {
					t.Errorf("got %v", got)
				}
			}},
		{"empty means default", map[string]string{KeyHTTPAddr: "  ", KeyBcryptCost: ""},
			func(t *testing.T, c Config) {
				if c.HTTPAddr != ":8080" || c.BcryptCost != 10 {
					t.Errorf("got %q %d", c.HTTPAddr, c.BcryptCost)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(tt.env))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestLoadInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string // the variables the problems must name, sorted
	}{
		{"esdb without url", map[string]string{KeyEventStore: "esdb"}, []string{KeyESDBURL}},
		{"kafka without brokers", map[string]string{KeyBus: "kafka"}, []string{KeyKafkaBrokers}},
		{"meilisearch without url", map[string]string{KeySearch: "meilisearch"}, []string{KeyMeiliURL}},
		{"s3 without endpoint and bucket", map[string]string{KeyBlob: "s3"}, []string{KeyS3Bucket, KeyS3Endpoint}},
		{"s3 access key without secret", map[string]string{KeyBlob: "s3", KeyS3Endpoint: "http://m:9000", KeyS3Bucket: "b", KeyS3AccessKey: "a"}, []string{KeyS3SecretKey}},
		{"unknown enums", map[string]string{KeyEventStore: "mongo", KeyBus: "nats", KeySearch: "elastic", KeyBlob: "gcs"}, []string{KeyBlob, KeyBus, KeyEventStore, KeySearch}},
		{"bcrypt below range", map[string]string{KeyBcryptCost: "9"}, []string{KeyBcryptCost}},
		{"bcrypt above range", map[string]string{KeyBcryptCost: "13"}, []string{KeyBcryptCost}},
		{"bcrypt not a number", map[string]string{KeyBcryptCost: "ten"}, []string{KeyBcryptCost}},
		{"bad listen address", map[string]string{KeyHTTPAddr: "8080"}, []string{KeyHTTPAddr}},
		{"listen port out of range", map[string]string{KeyHTTPAddr: ":70000"}, []string{KeyHTTPAddr}},
		{"database url wrong scheme", map[string]string{KeyDatabaseURL: "mysql://root@127.0.0.1/db"}, []string{KeyDatabaseURL}},
		{"database url without database", map[string]string{KeyDatabaseURL: "postgres://postgres@127.0.0.1:5432"}, []string{KeyDatabaseURL}},
		{"database url not a url", map[string]string{KeyDatabaseURL: "postgres://a b@%zz/db"}, []string{KeyDatabaseURL}},
		{"database url bad sslmode", map[string]string{KeyDatabaseURL: "postgres://p@h/db?sslmode=sometimes"}, []string{KeyDatabaseURL}},
		{"second read url bad", map[string]string{KeyDatabaseReadURLs: "postgres://u@r1/db,http://r2/db"}, []string{KeyDatabaseReadURLs}},
		{"redis bad scheme", map[string]string{KeyRedisURL: "memcached://127.0.0.1:11211"}, []string{KeyRedisURL}},
		{"redis bad db", map[string]string{KeyRedisURL: "redis://127.0.0.1:6379/x"}, []string{KeyRedisURL}},
		{"redis urls listed", map[string]string{KeyRedisURL: "redis://a:1,redis://b:2"}, []string{KeyRedisURL}},
		{"redis addr without port", map[string]string{KeyRedisURL: "r1,r2"}, []string{KeyRedisURL}},
		{"kafka broker without port", map[string]string{KeyBus: "kafka", KeyKafkaBrokers: "k1"}, []string{KeyKafkaBrokers}},
		{"esdb wrong scheme", map[string]string{KeyEventStore: "esdb", KeyESDBURL: "http://127.0.0.1:2113"}, []string{KeyESDBURL}},
		{"esdb scheme the client does not take", map[string]string{KeyEventStore: "esdb", KeyESDBURL: "kurrentdb://127.0.0.1:2113"}, []string{KeyESDBURL}},
		{"cdn not absolute", map[string]string{KeyCDNBaseURL: "/media"}, []string{KeyCDNBaseURL}},
		{"cdn purge url not http", map[string]string{KeyCDNPurgeURL: "ftp://cdn/purge"}, []string{KeyCDNPurgeURL}},
		{"cdn purge token without a url", map[string]string{KeyCDNPurgeToken: "tok"}, []string{KeyCDNPurgeURL}},
		{"cdn purge url bad: not reported as missing too", map[string]string{KeyCDNPurgeURL: "purge", KeyCDNPurgeToken: "tok"}, []string{KeyCDNPurgeURL}},
		{"s3 path style not a bool", map[string]string{KeyS3PathStyle: "maybe"}, []string{KeyS3PathStyle}},
		{"asset max pixels", map[string]string{KeyAssetMaxPixels: "0"}, []string{KeyAssetMaxPixels}},
		{"asset max pixels above the side limit", map[string]string{KeyAssetMaxPixels: "400000001"}, []string{KeyAssetMaxPixels}},
		{"asset max pixels not a whole number", map[string]string{KeyAssetMaxPixels: "40MP"}, []string{KeyAssetMaxPixels}},
		{"meili not http", map[string]string{KeyMeiliURL: "ftp://m"}, []string{KeyMeiliURL}},
		{"durations out of range", map[string]string{KeyShutdownTimeout: "0s", KeyConsistencyWait: "1h", KeyAccessTokenTTL: "forever"}, []string{KeyAccessTokenTTL, KeyConsistencyWait, KeyShutdownTimeout}},
		{"sizes", map[string]string{KeyCommandBodyLimit: "0", KeyAssetBodyLimit: "-1MiB", KeyIngestMaxBytes: "lots"}, []string{KeyAssetBodyLimit, KeyCommandBodyLimit, KeyIngestMaxBytes}},
		{"log level", map[string]string{KeyLogLevel: "verbose"}, []string{KeyLogLevel}},
		{"refresh ttl out of range", map[string]string{KeyRefreshTokenTTL: "30m"}, []string{KeyRefreshTokenTTL}},
		{"refresh ttl shorter than the access ttl", map[string]string{KeyRefreshTokenTTL: "1h", KeyAccessTokenTTL: "2h"}, []string{KeyRefreshTokenTTL}},
		{"access ttl bad: refresh not reported too", map[string]string{KeyRefreshTokenTTL: "1h", KeyAccessTokenTTL: "25h"}, []string{KeyAccessTokenTTL}},
		{"trusted proxy not an address", map[string]string{KeyTrustedProxies: "10.0.0.0/8,proxy.internal"}, []string{KeyTrustedProxies}},
		{"trusted proxy bad prefix length", map[string]string{KeyTrustedProxies: "10.0.0.0/33"}, []string{KeyTrustedProxies}},
		{"trusted proxy with a zone", map[string]string{KeyTrustedProxies: "fe80::1%eth0"}, []string{KeyTrustedProxies}},
		{"trusted proxy mapped prefix too short", map[string]string{KeyTrustedProxies: "::ffff:0:0/64"}, []string{KeyTrustedProxies}},
		{"verify key file with NUL", map[string]string{KeyJWTVerifyKeyFiles: "a\x00b.pem"}, []string{KeyJWTVerifyKeyFiles}},
		{"rate limits out of range", map[string]string{KeyRateAuthPerMin: "0", KeyRateAuthBurst: "-1", KeyRatePlaysPerMin: "1000001", KeyRatePlaysBurst: "many", KeyRatePublicPerMin: "1.5", KeyRatePublicBurst: "0x10"},
			[]string{KeyRateAuthBurst, KeyRateAuthPerMin, KeyRatePlaysBurst, KeyRatePlaysPerMin, KeyRatePublicBurst, KeyRatePublicPerMin}},
		{"every problem at once", map[string]string{KeyEventStore: "esdb", KeyBus: "kafka", KeyBcryptCost: "4", KeyHTTPAddr: "nope", KeyRedisURL: "x://y"},
			[]string{KeyBcryptCost, KeyESDBURL, KeyHTTPAddr, KeyKafkaBrokers, KeyRedisURL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(tt.env))
			if err == nil {
				t.Fatalf("Load accepted %v: %+v", tt.env, c)
			}
			if got := problemKeys(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("problems name %q, want %q\nerror: %v", got, tt.want, err)
			}
			for _, k := range tt.want {
				if !strings.Contains(err.Error(), k+": ") {
					t.Errorf("error text does not name %s: %v", k, err)
				}
			}
		})
	}
}

// TestSecretsNeverPrinted checks every way a Config reaches a log or a terminal.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	const pw = "s3cr3t-pw"
	c, err := Load(env(map[string]string{
		KeyDatabaseURL:      "postgres://app:" + pw + "@db:5432/mm?sslmode=disable",
		KeyDatabaseReadURLs: "postgres://app:" + pw + "@r1/mm,postgres://app@r2/mm?password=" + pw,
		KeyRedisURL:         "redis://:" + pw + "@127.0.0.1:6379/0",
		KeyEventStore:       "esdb",
		KeyESDBURL:          "esdb://admin:" + pw + "@127.0.0.1:2113?tls=false",
		KeySearch:           "meilisearch",
		KeyMeiliURL:         "http://127.0.0.1:7700",
		KeyMeiliKey:         pw,
		KeyBlob:             "s3",
		KeyS3Endpoint:       "http://minio:9000",
		KeyS3Bucket:         "media",
		KeyS3AccessKey:      "access",
		KeyS3SecretKey:      pw,
		KeyCDNPurgeURL:      "https://cdn:" + pw + "@purge.example.com/v1?token=" + pw,
		KeyCDNPurgeToken:    pw,
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "config", c, "meili_key", c.MeiliKey)
	jsonDump, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	outputs := map[string]string{
		"String":      c.String(),
		"%v":          fmt.Sprintf("%v", c),
		"%+v":         fmt.Sprintf("%+v", c),
		"%#v":         fmt.Sprintf("%#v", c),
		"slog JSON":   logged.String(),
		"json":        string(jsonDump),
		"secret %v":   fmt.Sprintf("%v %+v %#v %s %v", c.S3.SecretKey, c.MeiliKey, c.MeiliKey, c.S3.SecretKey, c.CDNPurgeToken),
		"field %+v":   fmt.Sprintf("%+v", c.S3),
		"LogValue":    c.LogValue().String(),
		"Secret JSON": string(must(json.Marshal(c.S3))),
	}
	for name, out := range outputs {
		if strings.Contains(out, pw) {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
	}
	// The redacted form still says what is configured.
	for _, want := range []string{"postgres://app:xxxxx@db:5432/mm", "MEDIAMESH_MEILI_KEY=[REDACTED]", "MEDIAMESH_CDN_PURGE_TOKEN=[REDACTED]", "https://cdn:xxxxx@purge.example.com/v1?token=xxxxx", "MEDIAMESH_S3_ACCESS_KEY=access", "esdb://admin:xxxxx@127.0.0.1:2113"} {
		if !strings.Contains(c.String(), want) {
			t.Errorf("String() lacks %q:\n%s", want, c.String())
		}
	}
	if c.S3.SecretKey.Reveal() != pw {
		t.Errorf("Reveal lost the secret")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestErrorsNeverRepeatSecrets: a bad value that holds a password is reported
// without it.
func TestErrorsNeverRepeatSecrets(t *testing.T) {
	t.Parallel()
	const pw = "hunter2-secret"
	for _, bad := range []map[string]string{
		{KeyDatabaseURL: "postgres://app:" + pw + "@db:5432/mm?sslmode=maybe"},
		{KeyDatabaseURL: "postgres://app:" + pw + "@db:99999/mm"},
		{KeyDatabaseURL: "postgres://app:" + pw + "@%zz/mm"},
		{KeyRedisURL: "redis://:" + pw + "@h:6379/x"},
		{KeyEventStore: "esdb", KeyESDBURL: "tcp://admin:" + pw + "@h:1113"},
	} {
		_, err := Load(env(bad))
		if err == nil {
			t.Errorf("Load accepted %v", bad)
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
}

func TestEveryKeyIsShownAndDescribed(t *testing.T) {
	t.Parallel()
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var help bytes.Buffer
	if err := WriteHelp(&help); err != nil {
		t.Fatal(err)
	}
	md := Markdown()
	str := c.String()
	seen := map[string]bool{}
	for _, k := range Keys() {
		if seen[k.Name] {
			t.Errorf("key %s listed twice", k.Name)
		}
		seen[k.Name] = true
		if !strings.HasPrefix(k.Name, "MEDIAMESH_") || k.Meaning == "" {
			t.Errorf("key %+v: want a MEDIAMESH_ name and a meaning", k)
		}
		for name, out := range map[string]string{"help": help.String(), "markdown": md, "String": str} {
			if !strings.Contains(out, k.Name) {
				t.Errorf("%s lacks %s", name, k.Name)
			}
		}
	}
	// API.md's table, which the compose stack relies on, is a subset of ours.
	for _, k := range []string{KeyHTTPAddr, KeyDatabaseURL, KeyDatabaseReadURLs, KeyRedisURL, KeyEventStore, KeyESDBURL, KeyBus,
		KeyKafkaBrokers, KeySearch, KeyMeiliURL, KeyMeiliKey, KeyBlob, KeyS3Endpoint, KeyS3Bucket, KeyS3Region, KeyS3AccessKey,
		KeyS3SecretKey, KeyCDNBaseURL, KeyDataDir, KeyJWTSigningKeyFile, KeyJWTIssuer, KeyJWTAudience, KeyBcryptCost} {
		if !seen[k] {
			t.Errorf("API.md key %s is missing", k)
		}
	}
	// Every default in the table loads (the defaults themselves are valid values).
	for _, k := range Keys() {
		if k.Default == "" {
			continue
		}
		if _, err := Load(env(map[string]string{k.Name: k.Default})); err != nil {
			t.Errorf("default of %s does not load: %v", k.Name, err)
		}
	}
}

func TestUnknown(t *testing.T) {
	t.Parallel()
	got := Unknown([]string{"PATH=/bin", "MEDIAMESH_HTTP_ADDR=:1", "MEDIAMESH_HTTP_ADR=:1", "MEDIAMESH_TEST_DATABASE_URL=x", "MEDIAMESH_BUSS=kafka"})
	want := []string{"MEDIAMESH_HTTP_ADR", "MEDIAMESH_BUSS"}
	if !slices.Equal(got, want) {
		t.Errorf("Unknown = %q, want %q", got, want)
	}
}

func TestBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		text string
	}{
		{"1MiB", 1 << 20, "1MiB"},
		{"1024", 1024, "1KiB"},
		{"1000", 1000, "1000"},
		{"3 GiB", 3 << 30, "3GiB"},
		{"1536KiB", 1536 << 10, "1536KiB"},
		{"1MB", 1e6, "1000000"},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
		if s := formatBytes(got); s != tt.text {
			t.Errorf("formatBytes(%d) = %q, want %q", got, s, tt.text)
		}
	}
}

// TestReadmeTable keeps the README's configuration table equal to Markdown().
func TestReadmeTable(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatalf("read README: %v", err)
	}
	const begin, end = "<!-- config:begin -->\n", "<!-- config:end -->"
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("README lacks the %q … %q markers", begin, end)
	}
	if got, want := s[i+len(begin):j], Markdown(); got != want {
		t.Errorf("README configuration table is out of date; replace it with the output of `go run ./cmd/mediamesh config --markdown`:\n%s", want)
	}
}
