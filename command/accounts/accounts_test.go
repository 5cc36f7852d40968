package accounts_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mediamesh/mediamesh/command/accounts"
)

// minter is a fake AccessTokens: the token spells out what it was minted for.
type minter struct {
	mu   sync.Mutex
	ttls []time.Duration
}

func (m *minter) Mint(subject, role string, ttl time.Duration) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ttls = append(m.ttls, ttl)
	return "access:" + subject + ":" + role, nil
}

type fixture struct {
	h     accounts.Handlers
	store *memStore
	mint  *minter
	now   *time.Time
}

// testCost keeps bcrypt fast under the race detector; the timing test uses the
// production default instead.
const testCost = bcrypt.MinCost

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWithCost(t, testCost)
}

func newFixtureWithCost(t *testing.T, cost int) *fixture {
	t.Helper()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f := &fixture{store: newMemStore(), mint: &minter{}, now: &now}
	h, err := accounts.NewHandlers(f.store, f.mint, accounts.Config{BcryptCost: cost, AllowLowBcryptCost: true,
		Now: func() time.Time { return *f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	return f
}

func (f *fixture) register(t *testing.T, email, password string) accounts.Account {
	t.Helper()
	a, err := f.h.Register.Handle(context.Background(), accounts.Register{Email: email, Password: password, Name: "Ann"})
	if err != nil {
		t.Fatalf("register %s: %v", email, err)
	}
	return a
}

func (f *fixture) login(t *testing.T, email, password string) accounts.Tokens {
	t.Helper()
	tok, err := f.h.Login.Handle(context.Background(), accounts.Login{Email: email, Password: password})
	if err != nil {
		t.Fatalf("login %s: %v", email, err)
	}
	return tok
}

func fieldsOf(err error) []string {
	var ve *accounts.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var out []string
	for _, f := range ve.Fields {
		out = append(out, f.Field)
	}
	return out
}

const goodPassword = "correct horse battery"

func TestRegister(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.register(t, "  Ann@Example.COM ", goodPassword)
	if a.Email != "ann@example.com" || a.Role != accounts.RoleViewer || a.Name != "Ann" || len(a.ID) != 36 {
		t.Fatalf("registered %+v", a)
	}
	if cost, err := bcrypt.Cost(a.PasswordHash); err != nil || cost != testCost {
		t.Fatalf("hash cost %d, %v", cost, err)
	}
	if bcrypt.CompareHashAndPassword(a.PasswordHash, []byte(goodPassword)) != nil {
		t.Fatal("the stored hash does not match the password")
	}
	_, err := f.h.Register.Handle(context.Background(), accounts.Register{Email: "ANN@example.com", Password: goodPassword, Name: "Other"})
	if !errors.Is(err, accounts.ErrEmailTaken) {
		t.Fatalf("same email in other case: err = %v, want ErrEmailTaken", err)
	}
}

func TestRegisterValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	long := strings.Repeat("a", 250) + "@example.com"
	tests := []struct {
		test                     string
		email, password, display string
		fields                   []string
	}{
		{"everything missing", "", "", "", []string{"email", "password", "name"}},
		{"not an email", "ann", goodPassword, "Ann", []string{"email"}},
		{"display name", "Ann <ann@example.com>", goodPassword, "Ann", []string{"email"}},
		{"two ats", "ann@@example.com", goodPassword, "Ann", []string{"email"}},
		{"space inside", "an n@example.com", goodPassword, "Ann", []string{"email"}},
		{"ip literal", "ann@[127.0.0.1]", goodPassword, "Ann", []string{"email"}},
		{"too long email", long, goodPassword, "Ann", []string{"email"}},
		{"password of 9 bytes", "ann@example.com", "123456789", "Ann", []string{"password"}},
		{"password of 73 bytes", "ann@example.com", strings.Repeat("p", 73), "Ann", []string{"password"}},
		{"password of 4 runes in 8 bytes", "ann@example.com", "éééé", "Ann", []string{"password"}},
		{"blank name", "ann@example.com", goodPassword, "   ", []string{"name"}},
		{"name of 201 characters", "ann@example.com", goodPassword, strings.Repeat("é", 201), []string{"name"}},
		{"control character in name", "ann@example.com", goodPassword, "A\x00nn", []string{"name"}},
	}
	for _, tc := range tests {
		t.Run(tc.test, func(t *testing.T) {
			t.Parallel()
			_, err := f.h.Register.Handle(context.Background(), accounts.Register{Email: tc.email, Password: tc.password, Name: tc.display})
			if got := fieldsOf(err); !slices.Equal(got, tc.fields) {
				t.Fatalf("invalid fields %v (err %v), want %v", got, err, tc.fields)
			}
		})
	}
	// Boundaries that are valid: 10 and 72 bytes, 200 characters, 5 two-byte runes.
	for i, pw := range []string{strings.Repeat("p", 10), strings.Repeat("p", 72), "ééééé"} {
		email := string(rune('a'+i)) + "@example.com"
		if _, err := f.h.Register.Handle(context.Background(), accounts.Register{Email: email, Password: pw, Name: strings.Repeat("é", 200)}); err != nil {
			t.Errorf("valid password of %d bytes: %v", len(pw), err)
		}
	}
	if len(f.store.byID) != 3 {
		t.Fatalf("%d accounts stored, want only the 3 valid ones", len(f.store.byID))
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a := f.register(t, "ann@example.com", goodPassword)
	tok := f.login(t, " ANN@example.com", goodPassword)
	if tok.AccessToken != "access:"+a.ID+":viewer" || tok.TokenType != "Bearer" || tok.ExpiresIn != 15*time.Minute {
		t.Fatalf("tokens %+v", tok)
	}
	if len(tok.RefreshToken) != accounts.RefreshTokenLen {
		t.Fatalf("refresh token %q", tok.RefreshToken)
	}
	if f.mint.ttls[0] != accounts.DefaultAccessTokenTTL {
		t.Fatalf("access token minted for %v", f.mint.ttls[0])
	}
	if _, ok := f.store.tokens[string(accounts.HashRefreshToken(tok.RefreshToken))]; !ok {
		t.Fatal("the refresh token is not stored by its hash")
	}
	for key := range f.store.tokens {
		if len(key) != 32 {
			t.Fatalf("stored token key of %d bytes, want a 32-byte hash", len(key))
		}
	}

	for _, tc := range []struct {
		name, email, password string
		want                  error
		fields                []string
	}{
		{"wrong password", "ann@example.com", goodPassword + "!", accounts.ErrInvalidCredentials, nil},
		{"unknown email", "bob@example.com", goodPassword, accounts.ErrInvalidCredentials, nil},
		{"malformed email", "not an email", goodPassword, accounts.ErrInvalidCredentials, nil},
		// bcrypt reads 72 bytes: a longer password that starts with the right 72 bytes
		// must not match.
		{"password longer than 72 bytes", "ann@example.com", strings.Repeat("x", 80), accounts.ErrInvalidCredentials, nil},
		{"missing fields", "", "", nil, []string{"email", "password"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.h.Login.Handle(context.Background(), accounts.Login{Email: tc.email, Password: tc.password})
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != nil && err.Error() != accounts.ErrInvalidCredentials.Error() {
				t.Fatalf("the error %q says more than the generic one", err)
			}
			if got := fieldsOf(err); !slices.Equal(got, tc.fields) {
				t.Fatalf("invalid fields %v, want %v", got, tc.fields)
			}
		})
	}

	long := strings.Repeat("x", 72)
	f.register(t, "long@example.com", long)
	f.login(t, "long@example.com", long)
	if _, err := f.h.Login.Handle(context.Background(), accounts.Login{Email: "long@example.com", Password: long + "tail"}); !errors.Is(err, accounts.ErrInvalidCredentials) {
		t.Fatalf("72 right bytes plus a tail: err = %v, want ErrInvalidCredentials", err)
	}
}

// TestLoginTakesAsLongForUnknownEmails checks the same-time property: a login for
// an email without an account runs a full bcrypt comparison at the configured cost,
// as a wrong password does.
//
// What is compared is the work each path does: the CPU time of the test's OS thread
// (Linux; the wall clock elsewhere), which other processes' load does not inflate,
// where the wall clock on a loaded CI machine (two race-instrumented test binaries
// on two cores) varied by more than a factor of two between identical calls. The
// three measurements (a bare bcrypt comparison, a wrong password, an unknown email)
// are still taken in interleaved rounds, the order rotating each round, and each is
// summed up by its minimum, the least disturbed sample (noise only adds time). Each
// path's minimum must exceed half the bcrypt minimum, and the two must be within a
// factor of two of each other. Without the dummy comparison the unknown-email path
// does microseconds of work, thousands of times less, and fails both checks.
//
// The cost is timingCost, not the default: under the race detector a cost-10
// comparison takes about a second, and a cost other than the default also catches a
// dummy hash made at a fixed cost instead of the configured one. It runs not in
// parallel, so that this package's other tests do not compete for the CPU.
func TestLoginTakesAsLongForUnknownEmails(t *testing.T) {
	const (
		timingCost = 6
		rounds     = 7
	)
	f := newFixtureWithCost(t, timingCost)
	f.register(t, "ann@example.com", goodPassword)
	hash, err := bcrypt.GenerateFromPassword([]byte(goodPassword), timingCost)
	if err != nil {
		t.Fatal(err)
	}
	login := func(email string) func() {
		return func() {
			if _, err := f.h.Login.Handle(context.Background(), accounts.Login{Email: email, Password: "wrong password"}); !errors.Is(err, accounts.ErrInvalidCredentials) {
				t.Fatalf("login %s: %v", email, err)
			}
		}
	}
	paths := []struct {
		name string
		run  func()
	}{
		{"bcrypt", func() { _ = bcrypt.CompareHashAndPassword(hash, []byte("wrong password")) }},
		{"wrong password", login("ann@example.com")},
		{"unknown email", login("nobody@example.com")},
	}
	// The paths run on this goroutine, which stays on one OS thread so that the
	// thread's CPU time is theirs.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	clock, what := threadCPUTime, "CPU time"
	if _, ok := threadCPUTime(); !ok {
		start := time.Now()
		clock, what = func() (time.Duration, bool) { return time.Since(start), true }, "wall time"
	}
	fastest := make([]time.Duration, len(paths))
	for round := range rounds {
		for i := range paths {
			p := (round + i) % len(paths)
			before, _ := clock()
			paths[p].run()
			after, _ := clock()
			if d := after - before; fastest[p] == 0 || d < fastest[p] {
				fastest[p] = d
			}
		}
	}
	bcryptTime, known, unknown := fastest[0], fastest[1], fastest[2]
	t.Logf("least %s of %d interleaved rounds: bcrypt %v, wrong password %v, unknown email %v", what, rounds, bcryptTime, known, unknown)
	for name, d := range map[string]time.Duration{"wrong password": known, "unknown email": unknown} {
		if d < bcryptTime/2 {
			t.Errorf("%s took %v, less than half a bcrypt comparison (%v)", name, d, bcryptTime)
		}
	}
	if r := float64(max(known, unknown)) / float64(max(min(known, unknown), 1)); r > 2 {
		t.Errorf("the two paths differ by a factor of %.2f", r)
	}
}

func TestRefreshRotatesAndDetectsReuse(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := f.register(t, "ann@example.com", goodPassword)
	first := f.login(t, "ann@example.com", goodPassword)

	second, err := f.h.Refresh.Handle(ctx, accounts.Refresh{RefreshToken: first.RefreshToken})
	if err != nil {
		t.Fatal(err)
	}
	if second.RefreshToken == first.RefreshToken || len(second.RefreshToken) != accounts.RefreshTokenLen {
		t.Fatalf("refresh did not rotate: %q", second.RefreshToken)
	}
	// A role change reaches the session at its next refresh.
	if _, err := f.h.SetRole.Handle(ctx, accounts.SetRole{Email: "ann@example.com", Role: accounts.RoleEditor}); err != nil {
		t.Fatal(err)
	}
	third, err := f.h.Refresh.Handle(ctx, accounts.Refresh{RefreshToken: second.RefreshToken})
	if err != nil {
		t.Fatal(err)
	}
	if third.AccessToken != "access:"+a.ID+":editor" {
		t.Fatalf("access token after set-role: %q", third.AccessToken)
	}
	// Reusing the first (spent) token revokes the family: the live one dies too.
	if _, err := f.h.Refresh.Handle(ctx, accounts.Refresh{RefreshToken: first.RefreshToken}); !errors.Is(err, accounts.ErrRefreshTokenReused) {
		t.Fatalf("reuse: err = %v, want ErrRefreshTokenReused", err)
	}
	if _, err := f.h.Refresh.Handle(ctx, accounts.Refresh{RefreshToken: third.RefreshToken}); !errors.Is(err, accounts.ErrInvalidRefreshToken) {
		t.Fatalf("live token after reuse: err = %v, want ErrInvalidRefreshToken", err)
	}

	// Expiry is 30 days after the token was issued.
	fresh := f.login(t, "ann@example.com", goodPassword)
	*f.now = f.now.Add(accounts.DefaultRefreshTokenTTL)
	if _, err := f.h.Refresh.Handle(ctx, accounts.Refresh{RefreshToken: fresh.RefreshToken}); !errors.Is(err, accounts.ErrInvalidRefreshToken) {
		t.Fatalf("expired: err = %v", err)
	}

	for name, tok := range map[string]string{"junk": "junk", "right length, not base64url": strings.Repeat("*", 43), "unknown": strings.Repeat("A", 43)} {
		if _, err := f.h.Refresh.Handle(ctx, accounts.Refresh{RefreshToken: tok}); !errors.Is(err, accounts.ErrInvalidRefreshToken) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := f.h.Refresh.Handle(ctx, accounts.Refresh{}); !slices.Equal(fieldsOf(err), []string{"refresh_token"}) {
		t.Errorf("empty: err = %v", err)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	ann := f.register(t, "ann@example.com", goodPassword)
	bob := f.register(t, "bob@example.com", goodPassword)
	annTok := f.login(t, "ann@example.com", goodPassword)
	other := f.login(t, "ann@example.com", goodPassword)

	// Bob cannot end Ann's session, and is not told anything.
	if err := f.h.Logout.Handle(ctx, accounts.Logout{AccountID: bob.ID, RefreshToken: annTok.RefreshToken}); err != nil {
		t.Fatal(err)
	}
	if err := f.h.Logout.Handle(ctx, accounts.Logout{AccountID: ann.ID, RefreshToken: annTok.RefreshToken}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.Refresh.Handle(ctx, accounts.Refresh{RefreshToken: annTok.RefreshToken}); !errors.Is(err, accounts.ErrInvalidRefreshToken) {
		t.Fatalf("refresh after logout: err = %v", err)
	}
	if _, err := f.h.Refresh.Handle(ctx, accounts.Refresh{RefreshToken: other.RefreshToken}); err != nil {
		t.Fatalf("another session after logout: %v", err)
	}
	if err := f.h.Logout.Handle(ctx, accounts.Logout{AccountID: ann.ID, RefreshToken: "junk"}); err != nil {
		t.Fatalf("junk token: %v", err)
	}
	if err := f.h.Logout.Handle(ctx, accounts.Logout{AccountID: ann.ID}); !slices.Equal(fieldsOf(err), []string{"refresh_token"}) {
		t.Fatalf("empty token: err = %v", err)
	}
}

func TestCreateUserAndSetRole(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a, err := f.h.CreateUser.Handle(ctx, accounts.CreateUser{Email: "Root@Example.com", Password: goodPassword, Role: accounts.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if a.Role != accounts.RoleAdmin || a.Name != "root" || a.Email != "root@example.com" {
		t.Fatalf("created %+v", a)
	}
	if _, err := f.h.CreateUser.Handle(ctx, accounts.CreateUser{Email: "x@example.com", Password: goodPassword, Role: "superuser"}); !slices.Equal(fieldsOf(err), []string{"role"}) {
		t.Fatalf("bad role: err = %v", err)
	}
	if _, err := f.h.CreateUser.Handle(ctx, accounts.CreateUser{Email: "root@example.com", Password: goodPassword, Role: accounts.RoleViewer}); !errors.Is(err, accounts.ErrEmailTaken) {
		t.Fatalf("duplicate: err = %v", err)
	}
	got, err := f.h.SetRole.Handle(ctx, accounts.SetRole{Email: " ROOT@example.com", Role: accounts.RoleEditor})
	if err != nil || got.Role != accounts.RoleEditor {
		t.Fatalf("set role: %+v, %v", got, err)
	}
	if _, err := f.h.SetRole.Handle(ctx, accounts.SetRole{Email: "nobody@example.com", Role: accounts.RoleEditor}); !errors.Is(err, accounts.ErrNotFound) {
		t.Fatalf("unknown: err = %v", err)
	}
	if _, err := f.h.SetRole.Handle(ctx, accounts.SetRole{Email: "root@example.com", Role: "root"}); !slices.Equal(fieldsOf(err), []string{"role"}) {
		t.Fatalf("bad role: err = %v", err)
	}
	if me, err := f.h.AccountByID.Handle(ctx, a.ID); err != nil || me.Email != "root@example.com" {
		t.Fatalf("by id: %+v, %v", me, err)
	}
	if _, err := f.h.AccountByID.Handle(ctx, "cli-subject"); !errors.Is(err, accounts.ErrNotFound) {
		t.Fatalf("non-uuid subject: err = %v", err)
	}
}

func TestNewHandlersRejectsBadWiring(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		store accounts.AccountStore
		mint  accounts.AccessTokens
		cfg   accounts.Config
	}{
		"nil store":  {nil, &minter{}, accounts.Config{}},
		"nil minter": {newMemStore(), nil, accounts.Config{}},
		"cost 9":     {newMemStore(), &minter{}, accounts.Config{BcryptCost: 9}},
		"cost 3":     {newMemStore(), &minter{}, accounts.Config{BcryptCost: 3, AllowLowBcryptCost: true}},
		"cost 13":    {newMemStore(), &minter{}, accounts.Config{BcryptCost: 13}},
		"negative":   {newMemStore(), &minter{}, accounts.Config{AccessTokenTTL: -time.Second}},
	} {
		if _, err := accounts.NewHandlers(tc.store, tc.mint, tc.cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReadPassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"secret password\n", "secret password", true},
		{"secret password\r\n", "secret password", true},
		{"secret password", "secret password", true},
		{" spaces count ", " spaces count ", true},
		{strings.Repeat("p", 72) + "\n", strings.Repeat("p", 72), true},
		{strings.Repeat("p", 73), "", false},
		{"two\nlines\n", "", false},
		{"\n", "", false},
		{"", "", false},
	} {
		got, err := accounts.ReadPassword(strings.NewReader(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ReadPassword(%q) = %q, %v", tc.in, got, err)
		}
	}
}
