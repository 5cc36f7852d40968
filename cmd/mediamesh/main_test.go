package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testEnv is an env over vars, with captured output.
type testEnv struct {
	env
	stdout, stderr *syncBuffer
}

func newTestEnv(vars map[string]string) testEnv {
	out, errb := &syncBuffer{}, &syncBuffer{}
	return testEnv{
		env: env{
			stdin:  strings.NewReader(""),
			stdout: out,
			stderr: errb,
			getenv: func(k string) string { return vars[k] },
			environ: func() []string {
				var kv []string
				for k, v := range vars {
					kv = append(kv, k+"="+v)
				}
				return kv
			},
		},
		stdout: out,
		stderr: errb,
	}
}

// runCmd runs the binary's entry point in-process and returns its exit code.
func runCmd(t *testing.T, te testEnv, args ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return run(ctx, te.env, args)
}

func TestTokenVerifiesWithTheKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vars := map[string]string{config.KeyDataDir: dir, config.KeyJWTIssuer: "iss-test", config.KeyJWTAudience: "aud-test"}
	tests := []struct {
		role, subject, ttl string
		wantTTL            time.Duration
	}{
		{"editor", "alice", "", 15 * time.Minute},
		{"admin", "ops", "2h", 2 * time.Hour},
		{"viewer", "bob", "90s", 90 * time.Second},
	}
	for _, tt := range tests {
		te := newTestEnv(vars)
		args := []string{"token", "--role", tt.role, "--subject", tt.subject}
		if tt.ttl != "" {
			args = append(args, "--ttl", tt.ttl)
		}
		if code := runCmd(t, te, args...); code != 0 {
			t.Fatalf("%v: exit %d, stderr %s", args, code, te.stderr)
		}
		out := te.stdout.String()
		if strings.Count(out, "\n") != 1 || strings.Count(out, ".") != 2 {
			t.Fatalf("stdout is not one token line: %q", out)
		}
		key, err := jwtkeys.LoadPrivateKey(filepath.Join(dir, config.DefaultSigningKeyName))
		if err != nil {
			t.Fatalf("the generated key is not under the data dir: %v", err)
		}
		v, err := jwtkeys.NewVerifier("iss-test", "aud-test", []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})
		if err != nil {
			t.Fatal(err)
		}
		claims, err := v.Verify(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("token does not verify with the key: %v", err)
		}
		if claims.Subject != tt.subject || claims.Role != tt.role {
			t.Errorf("claims %+v, want %s/%s", claims, tt.subject, tt.role)
		}
		if left := time.Until(claims.ExpiresAt); left > tt.wantTTL || left < tt.wantTTL-time.Minute {
			t.Errorf("expires in %s, want about %s", left, tt.wantTTL)
		}
		// A verifier for another audience rejects it.
		other, _ := jwtkeys.NewVerifier("iss-test", "someone-else", []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})
		if _, err := other.Verify(strings.TrimSpace(out)); err == nil {
			t.Error("token verified for another audience")
		}
	}
}

func TestTokenUsage(t *testing.T) {
	t.Parallel()
	vars := map[string]string{config.KeyDataDir: t.TempDir()}
	for _, args := range [][]string{
		{"token", "--subject", "a"},
		{"token", "--role", "root", "--subject", "a"},
		{"token", "--role", "editor"},
		{"token", "--role", "editor", "--subject", "a", "--ttl", "-1m"},
		{"token", "--bogus"},
	} {
		te := newTestEnv(vars)
		if code := runCmd(t, te, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if te.stdout.String() != "" {
			t.Errorf("%v printed to stdout: %q", args, te.stdout)
		}
	}
	// A configured key file that does not exist is an error, not a silent new key.
	te := newTestEnv(map[string]string{config.KeyJWTSigningKeyFile: filepath.Join(t.TempDir(), "missing.pem")})
	if code := runCmd(t, te, "token", "--role", "editor", "--subject", "a"); code != 1 || te.stdout.String() != "" {
		t.Errorf("missing key file: exit %d, stdout %q", code, te.stdout)
	}
}

func TestServeHelpListsEveryKey(t *testing.T) {
	t.Parallel()
	te := newTestEnv(nil)
	if code := runCmd(t, te, "serve", "--help"); code != 0 {
		t.Fatalf("serve --help: exit %d", code)
	}
	help := te.stderr.String()
	for _, k := range config.Keys() {
		if !strings.Contains(help, k.Name) {
			t.Errorf("serve --help lacks %s", k.Name)
		}
	}
	for _, want := range []string{"--role", "all|command|query|relay|projector|ingest"} {
		if !strings.Contains(help, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		code int
		want string // in stderr
	}{
		{nil, 2, "usage: mediamesh"},
		{[]string{"help"}, 0, "commands:"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"serve", "--role", "everything"}, 2, "unknown role"},
		{[]string{"serve", "--role", "relay"}, 1, "role relay needs MEDIAMESH_BUS=kafka"},
		{[]string{"migrate"}, 2, "usage: mediamesh migrate"},
		{[]string{"migrate", "down"}, 2, "usage: mediamesh migrate"},
		{[]string{"bench", "nosuch"}, 2, "unknown suite"},
		{[]string{"bench", "--help"}, 0, "suites: append, assets, auth"},
		{[]string{"seed", "--programs", "0"}, 2, "usage: mediamesh seed"},
	}
	for _, tt := range tests {
		te := newTestEnv(nil)
		if code := runCmd(t, te, tt.args...); code != tt.code {
			t.Errorf("%v: exit %d, want %d; stderr %s", tt.args, code, tt.code, te.stderr)
		}
		if !strings.Contains(te.stderr.String(), tt.want) {
			t.Errorf("%v: stderr lacks %q: %s", tt.args, tt.want, te.stderr)
		}
	}
}

func TestBadConfigurationListsEveryProblem(t *testing.T) {
	t.Parallel()
	te := newTestEnv(map[string]string{config.KeyBus: "kafka", config.KeyBcryptCost: "99", config.KeyMeiliKey: "top-secret-key"})
	if code := runCmd(t, te, "config"); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	var rec struct {
		Msg      string   `json:"msg"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(te.stderr.String()), &rec); err != nil {
		t.Fatalf("stderr is not one JSON log record: %v\n%s", err, te.stderr)
	}
	if len(rec.Problems) != 2 || !strings.Contains(te.stderr.String(), config.KeyKafkaBrokers) || !strings.Contains(te.stderr.String(), config.KeyBcryptCost) {
		t.Errorf("problems %q", rec.Problems)
	}
	if strings.Contains(te.stderr.String(), "top-secret-key") {
		t.Error("a secret reached the log")
	}
}

func TestConfigCommand(t *testing.T) {
	t.Parallel()
	te := newTestEnv(map[string]string{config.KeyS3SecretKey: "shh-secret", config.KeyHTTPAddr: ":9999", "MEDIAMESH_HTPP_ADDR": "typo"})
	if code := runCmd(t, te, "config"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.stderr)
	}
	out := te.stdout.String()
	if !strings.Contains(out, "MEDIAMESH_HTTP_ADDR=:9999\n") || strings.Contains(out, "shh-secret") || !strings.Contains(out, "MEDIAMESH_S3_SECRET_KEY=[REDACTED]") {
		t.Errorf("config output:\n%s", out)
	}
	if !strings.Contains(te.stderr.String(), "MEDIAMESH_HTPP_ADDR") {
		t.Errorf("unknown variable not warned about: %s", te.stderr)
	}
	te = newTestEnv(nil)
	if code := runCmd(t, te, "config", "--markdown"); code != 0 || te.stdout.String() != config.Markdown() {
		t.Errorf("config --markdown: exit %d, output differs from config.Markdown()", code)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	te := newTestEnv(nil)
	if code := runCmd(t, te, "version"); code != 0 || !strings.HasPrefix(te.stdout.String(), "mediamesh ") {
		t.Errorf("version: exit %d, %q", code, te.stdout)
	}
}
