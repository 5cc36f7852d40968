package api_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/accounts"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/infra/ratelimit"
)

// refuse is an account use case that turns every request down with err.
type refuse[C, R any] struct{ err error }

func (r refuse[C, R]) Handle(context.Context, C) (R, error) {
	var zero R
	return zero, r.err
}

type refuseLogout struct{}

func (refuseLogout) Handle(context.Context, accounts.Logout) error { return nil }

// refusingAuth serves the /v1/auth routes in tests about other things: they exist
// (the OpenAPI test needs every route) and nothing gets through them.
func refusingAuth() *api.Auth {
	return &api.Auth{
		Register: refuse[accounts.Register, accounts.Account]{accounts.ErrEmailTaken},
		Login:    refuse[accounts.Login, accounts.Tokens]{accounts.ErrInvalidCredentials},
		Refresh:  refuse[accounts.Refresh, accounts.Tokens]{accounts.ErrInvalidRefreshToken},
		Logout:   refuseLogout{},
		Me:       refuse[string, accounts.Account]{accounts.ErrNotFound},
	}
}

// localLimiter is an in-process rate limiter (Redis disabled).
func localLimiter(t *testing.T) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(nil, ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// clock is a settable clock shared by the signer, the verifier and its cache.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// authStack is the real account stack on one database: what every instance of a
// deployment shares (the database and the signing key).
type authStack struct {
	pool     *pgxpool.Pool
	key      ed25519.PrivateKey
	prevKey  ed25519.PrivateKey // a previous signing key that still verifies
	signer   *jwtkeys.Signer
	clock    *clock
	accounts accounts.Handlers
}

func newAuthStack(t *testing.T) *authStack {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	_, prev, _ := ed25519.GenerateKey(rand.Reader)
	clk := newClock()
	signer, err := jwtkeys.NewSigner(key, testIssuer, testAudience, jwtkeys.WithClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	h, err := accounts.NewHandlers(postgres.NewAccountStore(pool), signer,
		accounts.Config{BcryptCost: bcrypt.MinCost, AllowLowBcryptCost: true, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return &authStack{pool: pool, key: key, prevKey: prev, signer: signer, clock: clk, accounts: h}
}

// instance is one server of the stack, wired as the composition root does: a
// caching verifier over the signing key and the previous one, the real account use
// cases, fake commands (to check roles), and limiter.
func (st *authStack) instance(t *testing.T, limiter api.RateLimiter) *env {
	t.Helper()
	keys, err := jwtkeys.VerificationKeys(st.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys = append(keys, st.prevKey.Public().(ed25519.PublicKey))
	v, err := jwtkeys.NewVerifier(testIssuer, testAudience, keys, jwtkeys.WithClock(st.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	cv, err := jwtkeys.NewCachingVerifier(v, 0, jwtkeys.WithClock(st.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cv.Close)
	f := newFakes()
	logs := &syncBuffer{}
	a := api.New(api.Config{ConsistencySecret: testSecret}, api.Deps{
		Commands:    f.commands(),
		Editorial:   f.editorial(),
		Tokens:      cv,
		Keys:        cv,
		Idempotency: untouchedStore{t},
		Auth:        api.FromAccounts(st.accounts),
		RateLimiter: limiter,
		Logger:      slog.New(slog.NewJSONHandler(logs, nil)),
	})
	tokens, _ := api.NewConsistencyTokens(testSecret)
	return &env{app: a, fakes: f, key: st.key, signer: st.signer, tokens: tokens, logs: logs}
}

func post(path, body string, bearer ...string) req {
	r := req{method: http.MethodPost, path: path, body: body, headers: jsonHeaders()}
	if len(bearer) > 0 {
		r.bearer = bearer[0]
	}
	return r
}

type tokenBody struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

func decodeStrictly(t *testing.T, r response, dst any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
}

func tokensFrom(t *testing.T, r response) tokenBody {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", r.status, r.body)
	}
	var tb tokenBody
	decodeStrictly(t, r, &tb)
	if tb.TokenType != "Bearer" || tb.ExpiresIn != 900 || tb.AccessToken == "" || len(tb.RefreshToken) != accounts.RefreshTokenLen {
		t.Fatalf("token response %+v", tb)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("token response Cache-Control %q, want no-store", cc)
	}
	return tb
}

func hasRateLimitHeaders(t *testing.T, r response, limit int) {
	t.Helper()
	if got := r.header.Get(api.HeaderRateLimitLimit); got != itoa(limit) {
		t.Errorf("X-RateLimit-Limit %q, want %d", got, limit)
	}
	if r.header.Get(api.HeaderRateLimitRemaining) == "" || r.header.Get(api.HeaderRateLimitReset) == "" {
		t.Errorf("X-RateLimit-Remaining / Reset missing: %v", r.header)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

const password = "correct horse battery"

func TestAuthEndToEnd(t *testing.T) {
	t.Parallel()
	st := newAuthStack(t)
	e := st.instance(t, localLimiter(t))

	res := e.do(t, post("/v1/auth/register", `{"email":" Ann@Example.com","password":"`+password+`","name":"Ann"}`))
	if res.status != http.StatusCreated {
		t.Fatalf("register: %d %s", res.status, res.body)
	}
	var acct struct{ ID, Email, Name, Role string }
	decodeStrictly(t, res, &acct)
	if acct.Email != "ann@example.com" || acct.Name != "Ann" || acct.Role != "viewer" || len(acct.ID) != 36 {
		t.Fatalf("registered %+v", acct)
	}
	if strings.Contains(string(res.body), "password") {
		t.Fatalf("the response mentions the password: %s", res.body)
	}
	hasRateLimitHeaders(t, res, 100)
	e.do(t, post("/v1/auth/register", `{"email":"ANN@example.com","password":"`+password+`","name":"Other"}`)).problem(t, http.StatusConflict)

	res = e.do(t, post("/v1/auth/login", `{"email":"ann@example.com","password":"`+password+`"}`))
	first := tokensFrom(t, res)
	hasRateLimitHeaders(t, res, 100)
	if res.header.Get(api.HeaderRateLimitRemaining) != "97" {
		t.Errorf("remaining after 3 auth requests: %q", res.header.Get(api.HeaderRateLimitRemaining))
	}

	me := e.do(t, req{method: http.MethodGet, path: "/v1/auth/me", bearer: first.AccessToken})
	var got struct{ ID, Email, Name, Role string }
	decodeStrictly(t, me, &got)
	if me.status != http.StatusOK || got != acct {
		t.Fatalf("me: %d %+v, want %+v", me.status, got, acct)
	}

	// Refresh rotates: the old refresh token stops working.
	second := tokensFrom(t, e.do(t, post("/v1/auth/refresh", `{"refresh_token":"`+first.RefreshToken+`"}`)))
	if second.RefreshToken == first.RefreshToken {
		t.Fatal("refresh did not rotate the refresh token")
	}
	third := tokensFrom(t, e.do(t, post("/v1/auth/refresh", `{"refresh_token":"`+second.RefreshToken+`"}`)))

	// Reusing a spent refresh token (the attack: a stolen, already rotated token)
	// is 401 and revokes the whole family: the newest token stops working too.
	reuse := e.do(t, post("/v1/auth/refresh", `{"refresh_token":"`+first.RefreshToken+`"}`))
	reuse.problem(t, http.StatusUnauthorized)
	e.do(t, post("/v1/auth/refresh", `{"refresh_token":"`+third.RefreshToken+`"}`)).problem(t, http.StatusUnauthorized)

	// Logout ends another session; it needs a bearer token.
	other := tokensFrom(t, e.do(t, post("/v1/auth/login", `{"email":"ann@example.com","password":"`+password+`"}`)))
	e.do(t, post("/v1/auth/logout", `{"refresh_token":"`+other.RefreshToken+`"}`)).problem(t, http.StatusUnauthorized)
	out := e.do(t, post("/v1/auth/logout", `{"refresh_token":"`+other.RefreshToken+`"}`, other.AccessToken))
	if out.status != http.StatusNoContent || len(out.body) != 0 {
		t.Fatalf("logout: %d %s", out.status, out.body)
	}
	e.do(t, post("/v1/auth/refresh", `{"refresh_token":"`+other.RefreshToken+`"}`)).problem(t, http.StatusUnauthorized)
	// Logging out again, or with junk, is still 204.
	if r := e.do(t, post("/v1/auth/logout", `{"refresh_token":"junk"}`, other.AccessToken)); r.status != http.StatusNoContent {
		t.Fatalf("logout with junk: %d %s", r.status, r.body)
	}

	// A token for a subject without an account (minted by `mediamesh token`).
	e.do(t, req{method: http.MethodGet, path: "/v1/auth/me", bearer: e.token(t, "ops-bot", api.RoleAdmin)}).problem(t, http.StatusNotFound)
	e.do(t, req{method: http.MethodGet, path: "/v1/auth/me"}).problem(t, http.StatusUnauthorized)

	// The log never carries passwords or tokens.
	logs := e.logs.String()
	for _, secret := range []string{password, first.AccessToken, first.RefreshToken, other.RefreshToken} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log contains %q", secret)
		}
	}
}

func TestAuthRejectsBadInput(t *testing.T) {
	t.Parallel()
	st := newAuthStack(t)
	e := st.instance(t, localLimiter(t))
	tests := []struct {
		name   string
		r      req
		status int
		fields []string
	}{
		{"register without fields", post("/v1/auth/register", `{}`), 400, []string{"email", "password", "name"}},
		{"register short password", post("/v1/auth/register", `{"email":"a@example.com","password":"short","name":"A"}`), 400, []string{"password"}},
		{"register 73-byte password", post("/v1/auth/register", `{"email":"a@example.com","password":"`+strings.Repeat("p", 73)+`","name":"A"}`), 400, []string{"password"}},
		{"register bad email", post("/v1/auth/register", `{"email":"a@","password":"`+password+`","name":"A"}`), 400, []string{"email"}},
		{"register long name", post("/v1/auth/register", `{"email":"a@example.com","password":"`+password+`","name":"`+strings.Repeat("n", 201)+`"}`), 400, []string{"name"}},
		{"register with a role", post("/v1/auth/register", `{"email":"a@example.com","password":"`+password+`","name":"A","role":"admin"}`), 400, []string{"role"}},
		{"register no body", post("/v1/auth/register", ``), 400, nil},
		{"register not json", req{method: http.MethodPost, path: "/v1/auth/register", body: "email=a", headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, nil},
		{"login missing password", post("/v1/auth/login", `{"email":"a@example.com"}`), 400, []string{"password"}},
		{"login null email", post("/v1/auth/login", `{"email":null,"password":"x"}`), 400, []string{"email"}},
		{"refresh empty", post("/v1/auth/refresh", `{"refresh_token":""}`), 400, []string{"refresh_token"}},
		{"refresh junk", post("/v1/auth/refresh", `{"refresh_token":"junk"}`), 401, nil},
		{"refresh number", post("/v1/auth/refresh", `{"refresh_token":5}`), 400, []string{"refresh_token"}},
		{"wrong method", req{method: http.MethodGet, path: "/v1/auth/login"}, 405, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := e.do(t, tc.r).problem(t, tc.status)
			var fields []string
			for _, f := range p.Errors {
				fields = append(fields, f.Field)
			}
			if strings.Join(fields, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("fields %v, want %v", fields, tc.fields)
			}
		})
	}
	var n int
	if err := st.pool.QueryRow(context.Background(), `SELECT count(*) FROM accounts`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d accounts stored by bad requests (%v)", n, err)
	}
}

// TestLoginFailuresLookAlike: a wrong password and an unknown email get the same
// status, headers and body (but for the request id). Their timing is tested in
// command/accounts.
func TestLoginFailuresLookAlike(t *testing.T) {
	t.Parallel()
	st := newAuthStack(t)
	e := st.instance(t, localLimiter(t))
	e.do(t, post("/v1/auth/register", `{"email":"ann@example.com","password":"`+password+`","name":"Ann"}`))
	wrong := e.do(t, post("/v1/auth/login", `{"email":"ann@example.com","password":"wrong password"}`))
	unknown := e.do(t, post("/v1/auth/login", `{"email":"bob@example.com","password":"wrong password"}`))
	pw, pu := wrong.problem(t, http.StatusUnauthorized), unknown.problem(t, http.StatusUnauthorized)
	pw.RequestID, pu.RequestID = "", ""
	if pw.Type != pu.Type || pw.Detail != pu.Detail || pw.Title != pu.Title || len(pw.Errors)+len(pu.Errors) != 0 {
		t.Fatalf("the two failures differ:\n%+v\n%+v", pw, pu)
	}
	for _, h := range []string{"WWW-Authenticate", "Content-Type", "Cache-Control"} {
		if wrong.header.Get(h) != unknown.header.Get(h) {
			t.Errorf("%s differs: %q vs %q", h, wrong.header.Get(h), unknown.header.Get(h))
		}
	}
}

// TestRolesOfRealTokens: a registered viewer cannot run a command (403); after the
// operator's set-role, the next refresh carries editor and the command runs.
func TestRolesOfRealTokens(t *testing.T) {
	t.Parallel()
	st := newAuthStack(t)
	e := st.instance(t, localLimiter(t))
	e.do(t, post("/v1/auth/register", `{"email":"ann@example.com","password":"`+password+`","name":"Ann"}`))
	tok := tokensFrom(t, e.do(t, post("/v1/auth/login", `{"email":"ann@example.com","password":"`+password+`"}`)))
	create := `{"title":"T","category":"news","language":"en"}`
	e.do(t, post("/v1/programs", create, tok.AccessToken)).problem(t, http.StatusForbidden)
	e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs/" + knownProgram, bearer: tok.AccessToken}).problem(t, http.StatusForbidden)
	if n := e.fakes.rec.count(); n != 0 {
		t.Fatalf("a viewer's requests executed %d calls", n)
	}

	if _, err := st.accounts.SetRole.Handle(context.Background(), accounts.SetRole{Email: "ann@example.com", Role: accounts.RoleEditor}); err != nil {
		t.Fatal(err)
	}
	tok = tokensFrom(t, e.do(t, post("/v1/auth/refresh", `{"refresh_token":"`+tok.RefreshToken+`"}`)))
	if res := e.do(t, post("/v1/programs", create, tok.AccessToken)); res.status != http.StatusCreated {
		t.Fatalf("editor's command: %d %s", res.status, res.body)
	}
}

// TestCachedTokensStillFaceEveryCheck runs the token attacks against the
// production verifier, the caching one, after the cache holds a valid token of the
// same key: nothing but the exact cached token may hit, and a cached token stops
// working at its expiry. (hostile_test runs the same attacks on the plain verifier.)
func TestCachedTokensStillFaceEveryCheck(t *testing.T) {
	t.Parallel()
	st := newAuthStack(t)
	e := st.instance(t, localLimiter(t))
	a, err := st.accounts.CreateUser.Handle(context.Background(), accounts.CreateUser{Email: "ann@example.com", Password: password, Role: accounts.RoleEditor})
	if err != nil {
		t.Fatal(err)
	}
	valid, err := st.signer.Mint(a.ID, api.RoleEditor, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	me := func(tok string) response {
		return e.do(t, req{method: http.MethodGet, path: "/v1/auth/me", bearer: tok})
	}
	if r := me(valid); r.status != http.StatusOK {
		t.Fatalf("valid token: %d %s", r.status, r.body)
	}
	now := st.clock.now()
	pub := st.key.Public().(ed25519.PublicKey)
	kid := jwtkeys.KeyID(pub)
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": a.ID, "role": "admin",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	parts := strings.Split(valid, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 1
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	attacks := map[string]string{
		"alg none":                   noneTok,
		"hs256 with the public key":  forge(t, jwt.SigningMethodHS256, []byte(pub), kid, claims(nil)),
		"expired":                    forge(t, jwt.SigningMethodEdDSA, st.key, kid, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })),
		"not yet valid":              forge(t, jwt.SigningMethodEdDSA, st.key, kid, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })),
		"wrong issuer":               forge(t, jwt.SigningMethodEdDSA, st.key, kid, claims(func(c jwt.MapClaims) { c["iss"] = "evil" })),
		"wrong audience":             forge(t, jwt.SigningMethodEdDSA, st.key, kid, claims(func(c jwt.MapClaims) { c["aud"] = "other" })),
		"unknown kid":                forge(t, jwt.SigningMethodEdDSA, otherKey, jwtkeys.KeyID(otherKey.Public().(ed25519.PublicKey)), claims(nil)),
		"tampered payload":           parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"editor"`, `"admin"`, 1))) + "." + parts[2],
		"tampered signature":         parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig),
		"cached token with a suffix": valid + "A",
	}
	for name, tok := range attacks {
		t.Run(name, func(t *testing.T) {
			r := me(tok)
			r.problem(t, http.StatusUnauthorized)
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("no Bearer challenge: %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	// The cached token expires with its exp (plus the verifier's leeway at most).
	st.clock.advance(15*time.Minute + jwtkeys.DefaultLeeway + time.Second)
	me(valid).problem(t, http.StatusUnauthorized)
}

// TestJWKSDuringRotation: the JWK Set lists the signing key and the previous one,
// tokens of both verify, and the set may be cached for five minutes.
func TestJWKSDuringRotation(t *testing.T) {
	t.Parallel()
	st := newAuthStack(t)
	e := st.instance(t, localLimiter(t))
	res := e.do(t, req{method: http.MethodGet, path: "/.well-known/jwks.json"})
	if res.status != http.StatusOK || res.header.Get("Cache-Control") != "public, max-age=300" || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("jwks: %d %v", res.status, res.header)
	}
	var set jwtkeys.JWKSet
	decodeStrictly(t, res, &set)
	want := []string{jwtkeys.KeyID(st.key.Public().(ed25519.PublicKey)), jwtkeys.KeyID(st.prevKey.Public().(ed25519.PublicKey))}
	if len(set.Keys) != 2 || set.Keys[0].KeyID != want[0] || set.Keys[1].KeyID != want[1] {
		t.Fatalf("jwks %+v, want kids %v", set, want)
	}
	for _, k := range set.Keys {
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || k.KeyType != "OKP" || k.Curve != "Ed25519" || k.Alg != "EdDSA" || jwtkeys.KeyID(x) != k.KeyID {
			t.Fatalf("jwk %+v", k)
		}
	}
	hasRateLimitHeaders(t, res, api.DefaultPublicLimit.Rate)
	a, err := st.accounts.CreateUser.Handle(context.Background(), accounts.CreateUser{Email: "ann@example.com", Password: password, Role: accounts.RoleViewer})
	if err != nil {
		t.Fatal(err)
	}
	old, err := jwtkeys.NewSigner(st.prevKey, testIssuer, testAudience)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := old.Mint(a.ID, api.RoleViewer, time.Minute)
	if r := e.do(t, req{method: http.MethodGet, path: "/v1/auth/me", bearer: tok}); r.status != http.StatusOK {
		t.Fatalf("a token of the previous key: %d %s", r.status, r.body)
	}
}
