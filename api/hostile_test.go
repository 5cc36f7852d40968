package api_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
)

// forge signs arbitrary claims with key and method, bypassing the Signer.
func forge(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHostileRequestsAreRejectedBeforeAnythingRuns sends requests a careless or
// malicious client could send. Each must be a 4xx problem+json (never a 5xx) and the
// fake command layer must have executed nothing.
func TestHostileRequestsAreRejectedBeforeAnythingRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	editor := e.token(t, "alice", api.RoleEditor)
	pub := e.key.Public().(ed25519.PublicKey)
	kid := jwtkeys.KeyID(pub)
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": "alice", "role": "editor",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	parts := strings.Split(editor, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"editor"`, `"admin"`, 1))) + "." + parts[2]
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[len(sig)-1] ^= 1
	badSig := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	forged := e.tokens.Sign(api.WritePoint{StreamID: "program-" + knownProgram, Version: 1, Position: 1})
	forged = forged[:len(forged)-2] + "AA"
	otherTokens, _ := api.NewConsistencyTokens([]byte("another secret, another server!!"))

	validProgram := `{"title":"T","category":"news","language":"en"}`
	create := func(body string, hdr map[string]string) req {
		return req{method: http.MethodPost, path: "/v1/programs", body: body, headers: hdr, bearer: editor}
	}
	deep := `{"title":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`

	tests := []struct {
		name   string
		r      req
		status int
		field  string // a field the problem must name, if any
	}{
		{"deeply nested", create(deep, jsonHeaders()), 400, ""},
		{"invalid utf-8", create("{\"title\":\"\xff\xfe\",\"category\":\"news\",\"language\":\"en\"}", jsonHeaders()), 400, ""},
		{"wrong type string", create(`{"title":5,"category":"news","language":"en"}`, jsonHeaders()), 400, "title"},
		{"wrong type array", create(`{"title":"T","category":"news","language":"en","tags":"news"}`, jsonHeaders()), 400, "tags"},
		{"wrong element type", create(`{"title":"T","category":"news","language":"en","tags":["a",1]}`, jsonHeaders()), 400, "tags"},
		{"unknown field", create(`{"title":"T","category":"news","language":"en","admin":true}`, jsonHeaders()), 400, "admin"},
		{"duplicate field", create(`{"title":"T","title":"U","category":"news","language":"en"}`, jsonHeaders()), 400, "title"},
		{"null field", create(`{"title":null,"category":"news","language":"en"}`, jsonHeaders()), 400, "title"},
		{"huge string", create(`{"title":"`+strings.Repeat("é", 100_000)+`","category":"news","language":"en"}`, jsonHeaders()), 400, "title"},
		{"too many tags", create(`{"title":"T","category":"news","language":"en","tags":[`+strings.Repeat(`"a",`, 500)+`"a"]}`, jsonHeaders()), 400, "tags"},
		{"trailing garbage", create(validProgram+` xyz`, jsonHeaders()), 400, ""},
		{"two objects", create(validProgram+validProgram, jsonHeaders()), 400, ""},
		{"truncated json", create(`{"title":"T"`, jsonHeaders()), 400, ""},
		{"not an object", create(`["title"]`, jsonHeaders()), 400, ""},
		{"bare string", create(`"title"`, jsonHeaders()), 400, ""},
		{"empty body", create("", jsonHeaders()), 400, ""},
		{"wrong content type", create(validProgram, map[string]string{"Content-Type": "text/plain"}), 415, ""},
		{"no content type", create(validProgram, nil), 415, ""},
		{"form content type", create(validProgram, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}), 415, ""},
		{"latin-1 charset", create(validProgram, map[string]string{"Content-Type": "application/json; charset=iso-8859-1"}), 415, ""},
		{"gzip body", create(validProgram, jsonHeaders("Content-Encoding", "gzip")), 415, ""},
		{"integer overflow", req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/episodes", bearer: editor, headers: jsonHeaders(),
			body: `{"title":"E","number":1e40,"duration_seconds":60}`}, 400, "number"},
		{"fraction for integer", req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/episodes", bearer: editor, headers: jsonHeaders(),
			body: `{"title":"E","number":1.5,"duration_seconds":60}`}, 400, "number"},
		{"string for integer in patch", req{method: http.MethodPatch, path: "/v1/episodes/" + knownEpisode, bearer: editor, headers: jsonHeaders(),
			body: `{"number":"1"}`}, 400, "number"},
		{"body on publish", req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/publish", bearer: editor, headers: jsonHeaders(),
			body: `{"force":true}`}, 400, "force"},
		{"id not a uuid", req{method: http.MethodPost, path: "/v1/programs/../publish", bearer: editor}, 404, ""},
		{"id not a uuid either", req{method: http.MethodPost, path: "/v1/programs/12345/publish", bearer: editor}, 404, ""},
		{"missing token", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders()}, 401, ""},
		{"basic auth", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders("Authorization", "Basic YWxpY2U6c2VjcmV0")}, 401, ""},
		{"bearer without token", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders("Authorization", "Bearer ")}, 401, ""},
		{"garbage token", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(), bearer: "not-a-jwt"}, 401, ""},
		{"tampered token", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(), bearer: tampered}, 401, ""},
		{"tampered signature", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(), bearer: badSig}, 401, ""},
		{"expired token", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: forge(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }))}, 401, ""},
		{"token without exp", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: forge(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { delete(c, "exp") }))}, 401, ""},
		{"not yet valid token", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: forge(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }))}, 401, ""},
		{"alg none", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(), bearer: noneTok}, 401, ""},
		{"hs256 signed with the public key", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: forge(t, jwt.SigningMethodHS256, []byte(pub), kid, claims(nil))}, 401, ""},
		{"wrong issuer", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: forge(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { c["iss"] = "evil" }))}, 401, ""},
		{"wrong audience", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: forge(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { c["aud"] = "other" }))}, 401, ""},
		{"unknown kid", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: forge(t, jwt.SigningMethodEdDSA, otherKey, jwtkeys.KeyID(otherKey.Public().(ed25519.PublicKey)), claims(nil))}, 401, ""},
		{"right kid, other key", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: forge(t, jwt.SigningMethodEdDSA, otherKey, kid, claims(nil))}, 401, ""},
		{"token without role", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: forge(t, jwt.SigningMethodEdDSA, e.key, kid, claims(func(c jwt.MapClaims) { delete(c, "role") }))}, 401, ""},
		{"viewer on a command", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: e.token(t, "bob", api.RoleViewer)}, 403, ""},
		{"unknown role on a command", req{method: http.MethodPost, path: "/v1/programs", body: validProgram, headers: jsonHeaders(),
			bearer: e.token(t, "bob", "superuser")}, 403, ""},
		{"viewer on an editorial read", req{method: http.MethodGet, path: "/v1/cms/programs/" + knownProgram,
			bearer: e.token(t, "bob", api.RoleViewer)}, 403, ""},
		{"forged consistency token", req{method: http.MethodGet, path: "/v1/cms/programs/" + knownProgram, bearer: editor,
			headers: map[string]string{api.HeaderConsistencyToken: forged}}, 400, api.HeaderConsistencyToken},
		{"consistency token of another secret", req{method: http.MethodGet, path: "/v1/cms/programs/" + knownProgram, bearer: editor,
			headers: map[string]string{api.HeaderConsistencyToken: otherTokens.Sign(api.WritePoint{StreamID: "program-x", Version: 1, Position: 1})}}, 400, api.HeaderConsistencyToken},
		{"garbled consistency token", req{method: http.MethodGet, path: "/v1/cms/episodes/" + knownEpisode, bearer: editor,
			headers: map[string]string{api.HeaderConsistencyToken: "%%%.###"}}, 400, api.HeaderConsistencyToken},
		{"weak if-match", create(validProgram, jsonHeaders("If-Match", `W/"3"`)), 400, "If-Match"},
		{"non-numeric if-match", req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/publish", bearer: editor,
			headers: map[string]string{"If-Match": `"abc"`}}, 400, "If-Match"},
		{"negative if-match", req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/publish", bearer: editor,
			headers: map[string]string{"If-Match": `"-1"`}}, 400, "If-Match"},
		{"star if-match", req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/publish", bearer: editor,
			headers: map[string]string{"If-Match": `*`}}, 400, "If-Match"},
		{"list if-match", req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/publish", bearer: editor,
			headers: map[string]string{"If-Match": `"1", "2"`}}, 400, "If-Match"},
		{"huge if-match", req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/publish", bearer: editor,
			headers: map[string]string{"If-Match": `"99999999999999999999999"`}}, 400, "If-Match"},
		{"idempotency key too long", create(validProgram, jsonHeaders("Idempotency-Key", strings.Repeat("k", 300))), 400, "Idempotency-Key"},
		{"idempotency key with spaces", create(validProgram, jsonHeaders("Idempotency-Key", "a key")), 400, "Idempotency-Key"},
		{"unknown route", req{method: http.MethodGet, path: "/v1/nothing", bearer: editor}, 404, ""},
		{"wrong method", req{method: http.MethodDelete, path: "/v1/programs/" + knownProgram, bearer: editor}, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.fakes.rec.count()
			res := e.do(t, tc.r)
			p := res.problem(t, tc.status)
			if tc.field != "" {
				found := false
				for _, f := range p.Errors {
					found = found || f.Field == tc.field
				}
				if !found {
					t.Errorf("problem does not name %q: %+v", tc.field, p)
				}
			}
			if n := e.fakes.rec.count() - before; n != 0 {
				t.Errorf("the command layer executed %d call(s): %v", n, e.fakes.rec.all())
			}
			if tc.status == http.StatusUnauthorized && !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %q", res.header.Get("WWW-Authenticate"))
			}
			if tc.status == http.StatusMethodNotAllowed && res.header.Get("Allow") != "GET, HEAD, PATCH" {
				t.Errorf("405 Allow = %q, want GET, HEAD, PATCH (discovery reads, the PATCH command)", res.header.Get("Allow"))
			}
		})
	}
	if n := e.fakes.rec.count(); n != 0 {
		t.Fatalf("hostile requests executed %d call(s)", n)
	}
	// The log never carries tokens or bodies.
	logs := e.logs.String()
	for _, secret := range []string{editor, tampered, `"title":"T"`, "Basic YWxp"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log contains %q", secret)
		}
	}
}
