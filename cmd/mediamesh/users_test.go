package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// callJSON sends one request with a JSON body and extra headers, and decodes a JSON
// answer into out (when out is not nil and the body is not empty).
func callJSON(t *testing.T, method, u, token, body string, hdr map[string]string, out any) (int, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, u, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, resp.Header
}

type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

type account struct {
	ID, Email, Name, Role string
}

// runUsersCmd runs `mediamesh users ARGS` with stdin and returns the exit code and
// the captured output.
func runUsersCmd(t *testing.T, vars map[string]string, stdin string, args ...string) (int, testEnv) {
	t.Helper()
	te := newTestEnv(vars)
	te.stdin = strings.NewReader(stdin)
	return runCmd(t, te, append([]string{"users"}, args...)...), te
}

// TestUsersCreateThenLoginThroughTheServer is issue 5 through the composition
// root: the first admin is created with `users create`, logs in over HTTP, reads
// /v1/auth/me, refreshes (a reused refresh token is refused), logs out; `users
// set-role` reaches the next login; a token signed by a key of
// MEDIAMESH_JWT_VERIFY_KEY_FILES is accepted and that key is in the JWK Set; the
// configured auth rate limit answers 429 past its burst, per client IP as told by
// a trusted proxy.
func TestUsersCreateThenLoginThroughTheServer(t *testing.T) {
	t.Parallel()
	_, dbURL := pgtest.NewDB(t)
	vars := serverVars(t, dbURL)

	// An old signing key, still accepted during a rotation.
	_, oldKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := jwtkeys.MarshalPrivateKeyPEM(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	oldFile := filepath.Join(t.TempDir(), "old.pem")
	if err := os.WriteFile(oldFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	vars[config.KeyJWTVerifyKeyFiles] = oldFile
	const burst = 6
	vars[config.KeyRateAuthPerMin] = "1"
	vars[config.KeyRateAuthBurst] = "6"
	vars[config.KeyTrustedProxies] = "127.0.0.1"

	const email, password = "admin@example.com", "a long admin password"
	code, te := runUsersCmd(t, vars, password+"\n", "create", "--email", "Admin@Example.com ", "--password-stdin", "--role", "admin")
	if code != 0 || !strings.Contains(te.stdout.String(), "created admin "+email) {
		t.Fatalf("users create: exit %d\nstdout %s\nstderr %s", code, te.stdout, te.stderr)
	}

	// Mistakes an operator can fix are usage errors (2), each problem named.
	for _, tt := range []struct {
		name, stdin string
		args        []string
		want        []string
	}{
		{"email taken", password, []string{"create", "--email", email, "--password-stdin", "--role", "viewer"}, []string{"already exists"}},
		{"invalid fields", "short", []string{"create", "--email", "not-an-email", "--password-stdin", "--role", "root"},
			[]string{"email: must be", "password: must be at least", "role: must be"}},
		{"empty stdin", "", []string{"create", "--email", "x@example.com", "--password-stdin", "--role", "viewer"}, []string{"standard input is empty"}},
		{"unknown email", "", []string{"set-role", "--email", "nobody@example.com", "--role", "editor"}, []string{"not found"}},
	} {
		code, te := runUsersCmd(t, vars, tt.stdin, tt.args...)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2; stderr %s", tt.name, code, te.stderr)
		}
		for _, w := range tt.want {
			if !strings.Contains(te.stderr.String(), w) {
				t.Errorf("%s: stderr lacks %q: %s", tt.name, w, te.stderr)
			}
		}
	}

	base, _, logs := startServe(t, vars, "--role", "command")
	login := `{"email":"` + email + `","password":"` + password + `"}`
	var tok tokenPair
	if code, _ := callJSON(t, "POST", base+"/v1/auth/login", "", login, nil, &tok); code != http.StatusOK || tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" || tok.ExpiresIn != 900 {
		t.Fatalf("login: %d %+v\n%s", code, tok, logs.String())
	}
	var me account
	if code, _ := callJSON(t, "GET", base+"/v1/auth/me", tok.AccessToken, "", nil, &me); code != http.StatusOK || me.Email != email || me.Role != "admin" || me.Name != "admin" {
		t.Fatalf("me: %d %+v", code, me)
	}
	var next tokenPair
	if code, _ := callJSON(t, "POST", base+"/v1/auth/refresh", "", `{"refresh_token":"`+tok.RefreshToken+`"}`, nil, &next); code != http.StatusOK || next.RefreshToken == "" || next.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %d %+v", code, next)
	}
	// An admin token may send commands.
	if code, _ := callJSON(t, "POST", base+"/v1/programs", next.AccessToken, `{"title":"By the admin","category":"news","language":"en"}`, nil, nil); code != http.StatusCreated {
		t.Errorf("command with the admin's token: %d", code)
	}
	if code, _ := callJSON(t, "POST", base+"/v1/auth/logout", next.AccessToken, `{"refresh_token":"`+next.RefreshToken+`"}`, nil, nil); code != http.StatusNoContent {
		t.Errorf("logout: %d", code)
	}
	if code, _ := callJSON(t, "POST", base+"/v1/auth/refresh", "", `{"refresh_token":"`+next.RefreshToken+`"}`, nil, nil); code != http.StatusUnauthorized {
		t.Errorf("refresh after logout: %d, want 401", code)
	}

	// The key of MEDIAMESH_JWT_VERIFY_KEY_FILES verifies, and is published.
	var jwks jwtkeys.JWKSet
	if code, _ := callJSON(t, "GET", base+"/.well-known/jwks.json", "", "", nil, &jwks); code != http.StatusOK || len(jwks.Keys) != 2 {
		t.Fatalf("jwks: %d %+v", code, jwks)
	}
	oldKID := jwtkeys.KeyID(oldKey.Public().(ed25519.PublicKey))
	if jwks.Keys[1].KeyID != oldKID {
		t.Errorf("jwks %+v lacks the old key %s", jwks, oldKID)
	}
	oldSigner, err := jwtkeys.NewSigner(oldKey, "mediamesh", "mediamesh")
	if err != nil {
		t.Fatal(err)
	}
	oldToken, err := oldSigner.Mint(me.ID, "admin", tokenTTLForTools)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := callJSON(t, "GET", base+"/v1/auth/me", oldToken, "", nil, nil); code != http.StatusOK {
		t.Errorf("a token of the old key: %d, want 200", code)
	}

	// Login, refresh and refresh after logout took 3 of the burst; the rest goes,
	// then 429.
	for i := 3; i < burst; i++ {
		if code, _ := callJSON(t, "POST", base+"/v1/auth/refresh", "", `{"refresh_token":"made-up"}`, nil, nil); code != http.StatusUnauthorized {
			t.Fatalf("auth request %d of the burst: %d, want 401", i+1, code)
		}
	}
	code, hdr := callJSON(t, "POST", base+"/v1/auth/refresh", "", `{"refresh_token":"made-up"}`, nil, nil)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || hdr.Get("X-RateLimit-Limit") != "1" {
		t.Fatalf("past the burst: %d %v, want 429 with Retry-After and the configured limit", code, hdr)
	}

	// From the trusted proxy, X-Forwarded-For names the client: another bucket. The
	// role set by `users set-role` reaches the next login.
	if code, te := runUsersCmd(t, vars, "", "set-role", "--email", email, "--role", "editor"); code != 0 || !strings.Contains(te.stdout.String(), "is now editor") {
		t.Fatalf("set-role: exit %d %s %s", code, te.stdout, te.stderr)
	}
	viaProxy := map[string]string{"X-Forwarded-For": "203.0.113.7"}
	if code, _ := callJSON(t, "POST", base+"/v1/auth/login", "", login, viaProxy, &tok); code != http.StatusOK {
		t.Fatalf("login of another client behind the trusted proxy: %d", code)
	}
	if code, _ := callJSON(t, "GET", base+"/v1/auth/me", tok.AccessToken, "", nil, &me); code != http.StatusOK || me.Role != "editor" {
		t.Errorf("me after set-role: %d %+v", code, me)
	}
}

func TestUsersUsage(t *testing.T) {
	t.Parallel()
	// None of these reaches the database.
	vars := map[string]string{config.KeyDatabaseURL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable", config.KeyDataDir: t.TempDir()}
	tests := []struct {
		args  []string
		stdin string
		code  int
		want  string
	}{
		{nil, "", 2, "usage: mediamesh users create"},
		{[]string{"--help"}, "", 0, "mediamesh users set-role"},
		{[]string{"delete"}, "", 2, `unknown subcommand "delete"`},
		{[]string{"create", "--email", "a@example.com", "--role", "admin"}, "a long password", 2, "--password-stdin"},
		{[]string{"create", "--email", "a@example.com", "--password-stdin"}, "a long password", 2, "--role"},
		{[]string{"create", "--password", "x"}, "", 2, "flag provided but not defined"},
		{[]string{"create", "--email", "a@example.com", "--password-stdin", "--role", "admin"}, "two\nlines", 2, "more than one line"},
		{[]string{"set-role", "--email", "a@example.com"}, "", 2, "--email and --role are required"},
	}
	for _, tt := range tests {
		code, te := runUsersCmd(t, vars, tt.stdin, tt.args...)
		if code != tt.code || !strings.Contains(te.stderr.String(), tt.want) {
			t.Errorf("users %q: exit %d (want %d), stderr lacks %q:\n%s", tt.args, code, tt.code, tt.want, te.stderr)
		}
		if te.stdout.String() != "" {
			t.Errorf("users %q printed to stdout: %q", tt.args, te.stdout)
		}
	}
}
