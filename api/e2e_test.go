package api_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/app"
	eventstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// newRealEnv wires the api to the real command handlers, the PostgreSQL event store
// and the PostgreSQL idempotency store, as the composition root does.
func newRealEnv(t *testing.T) (*env, *pgxpool.Pool) {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	cmds, editorial := api.FromHandlers(app.NewHandlers(eventstore.New(pool)))
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := jwtkeys.NewSigner(key, testIssuer, testAudience)
	verifier, _ := jwtkeys.NewVerifier(testIssuer, testAudience, []ed25519.PublicKey{signer.PublicKey()})
	tokens, _ := api.NewConsistencyTokens(key.Seed())
	logs := &syncBuffer{}
	a := api.New(api.Config{ConsistencySecret: key.Seed()}, api.Deps{
		Commands:    cmds,
		Editorial:   editorial,
		Tokens:      verifier,
		Idempotency: postgres.NewIdempotencyStore(pool),
		Readiness:   []api.ReadinessCheck{{Name: "postgres", Check: func(ctx context.Context) error { return pool.Ping(ctx) }}},
		Logger:      slog.New(slog.NewJSONHandler(logs, nil)),
	})
	return &env{app: a, key: key, signer: signer, tokens: tokens, logs: logs, fakes: newFakes()}, pool
}

func countEvents(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM eventstore_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func hasKeys(t *testing.T, what string, m map[string]any, want ...string) {
	t.Helper()
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("%s lacks %q: %v", what, k, m)
		}
	}
	if len(m) != len(want) {
		t.Errorf("%s has keys %v, want exactly %v", what, keys(m), want)
	}
}

func TestEndToEndWithTheRealWriteSide(t *testing.T) {
	t.Parallel()
	e, pool := newRealEnv(t)
	tok := e.token(t, "editor-1", api.RoleEditor)
	post := func(path, body string, hdr ...string) response {
		t.Helper()
		h := jsonHeaders(hdr...)
		return e.do(t, req{method: http.MethodPost, path: path, body: body, headers: h, bearer: tok})
	}

	if res := e.do(t, req{method: http.MethodGet, path: "/health/ready"}); res.status != http.StatusOK {
		t.Fatalf("ready: %d %s", res.status, res.body)
	}

	// Create.
	res := post("/v1/programs", `{"title":"Night Shift","description":"A drama.","category":"drama","language":"en-US","tags":["night","hospital"],"external_id":"ns-1"}`)
	created := checkWrite(t, e, res, http.StatusCreated, []string{"id", "position", "version"})
	pid := created["id"].(string)
	if res.header.Get("Location") != "/v1/cms/programs/"+pid || created["version"] != 1.0 {
		t.Fatalf("create: %v %q", created, res.header.Get("Location"))
	}

	// Publish.
	res = post("/v1/programs/"+pid+"/publish", "")
	checkWrite(t, e, res, http.StatusOK, []string{"id", "position", "version"})

	// Add an episode.
	res = post("/v1/programs/"+pid+"/episodes", `{"title":"Pilot","number":1,"duration_seconds":2700}`)
	ep := checkWrite(t, e, res, http.StatusCreated, []string{"id", "position", "program_id", "version"})
	eid := ep["id"].(string)
	if ep["program_id"] != pid || res.header.Get("Location") != "/v1/cms/episodes/"+eid {
		t.Fatalf("add episode: %v %q", ep, res.header.Get("Location"))
	}

	// Publish the episode; its token reads back.
	res = post("/v1/episodes/"+eid+"/publish", "")
	pubEp := checkWrite(t, e, res, http.StatusOK, []string{"id", "position", "program_id", "version"})
	token := res.header.Get(api.HeaderConsistencyToken)
	version := int64(pubEp["version"].(float64))

	// Read the program back in API.md's shape.
	res = e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs/" + pid, bearer: tok, headers: map[string]string{api.HeaderConsistencyToken: token}})
	if res.status != http.StatusOK || res.header.Get("ETag") != fmt.Sprintf(`"%d"`, version) {
		t.Fatalf("program read: %d ETag %q %s", res.status, res.header.Get("ETag"), res.body)
	}
	pv := res.json(t)
	hasKeys(t, "program", pv, "id", "title", "description", "category", "language", "tags", "external_id", "status",
		"version", "created_at", "updated_at", "published_at", "episodes")
	if pv["status"] != "published" || pv["title"] != "Night Shift" || pv["language"] != "en-US" || pv["version"] != float64(version) ||
		!reflect.DeepEqual(pv["tags"], []any{"night", "hospital"}) || pv["published_at"] == nil {
		t.Fatalf("program %s", res.body)
	}
	eps := pv["episodes"].([]any)
	if len(eps) != 1 {
		t.Fatalf("episodes %v", eps)
	}
	hasKeys(t, "episode summary", eps[0].(map[string]any), "id", "title", "number", "season", "status", "version")
	if s := eps[0].(map[string]any); s["id"] != eid || s["status"] != "published" || s["season"] != 1.0 {
		t.Fatalf("episode summary %v", s)
	}
	for _, ts := range []string{"created_at", "updated_at", "published_at"} {
		if _, err := time.Parse(time.RFC3339Nano, pv[ts].(string)); err != nil {
			t.Errorf("%s: %v", ts, err)
		}
	}
	if r := e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs/" + pid, bearer: tok,
		headers: map[string]string{"If-None-Match": res.header.Get("ETag")}}); r.status != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", r.status)
	}

	res = e.do(t, req{method: http.MethodGet, path: "/v1/cms/episodes/" + eid, bearer: tok})
	ev := res.json(t)
	hasKeys(t, "episode", ev, "id", "program_id", "title", "number", "season", "description", "duration_seconds", "external_id",
		"status", "version", "created_at", "updated_at", "published_at")
	if res.header.Get("ETag") != fmt.Sprintf(`"%d"`, version) || ev["program_id"] != pid || ev["duration_seconds"] != 2700.0 {
		t.Fatalf("episode read: %q %s", res.header.Get("ETag"), res.body)
	}

	res = e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs/" + pid + "/history", bearer: tok})
	var hist []map[string]any
	if err := json.Unmarshal(res.body, &hist); err != nil || len(hist) != 4 {
		t.Fatalf("history: %v %s", err, res.body)
	}
	wantTypes := []string{"mediamesh.program.created.v1", "mediamesh.program.published.v1", "mediamesh.episode.added.v1", "mediamesh.episode.published.v1"}
	for i, h := range hist {
		hasKeys(t, "history entry", h, "position", "version", "type", "occurred_at", "actor", "data")
		if h["type"] != wantTypes[i] || h["version"] != float64(i+1) || h["actor"] != "editor-1" {
			t.Fatalf("history[%d] = %v", i, h)
		}
	}

	// If-Match: stale is 412 and writes nothing; current applies.
	before := countEvents(t, pool)
	r := e.do(t, req{method: http.MethodPatch, path: "/v1/programs/" + pid, bearer: tok, body: `{"title":"Day Shift"}`,
		headers: jsonHeaders("If-Match", `"1"`)})
	r.problem(t, http.StatusPreconditionFailed)
	if countEvents(t, pool) != before {
		t.Fatal("a 412 wrote events")
	}
	r = e.do(t, req{method: http.MethodPatch, path: "/v1/programs/" + pid, bearer: tok, body: `{"title":"Day Shift"}`,
		headers: jsonHeaders("If-Match", fmt.Sprintf(`"%d"`, version))})
	checkWrite(t, e, r, http.StatusOK, []string{"id", "position", "version"})
	version++

	// A command that changes nothing: 200 with the unchanged version, nothing appended.
	before = countEvents(t, pool)
	r = post("/v1/programs/"+pid+"/publish", "")
	if body := checkWrite(t, e, r, http.StatusOK, []string{"id", "position", "version"}); body["version"] != float64(version) || countEvents(t, pool) != before {
		t.Fatalf("no-op publish: %v, events %d -> %d", body, before, countEvents(t, pool))
	}

	// Domain errors through the real handlers.
	post("/v1/programs/"+pid+"/episodes", `{"title":"Dup","number":1,"duration_seconds":60}`).problem(t, http.StatusConflict)
	p := post("/v1/programs", `{"title":"","category":"Not A Slug","language":"en"}`).problem(t, http.StatusBadRequest)
	if len(p.Errors) < 2 {
		t.Fatalf("validation errors %+v", p.Errors)
	}
	post("/v1/programs/"+pid+"/archive", "")
	post("/v1/programs/"+pid+"/publish", "").problem(t, http.StatusUnprocessableEntity)
	post("/v1/programs/0190f1f4-0000-7000-8000-00000000dead/publish", "").problem(t, http.StatusNotFound)
}

func TestEndToEndIdempotencyKeyRetryAppendsNothing(t *testing.T) {
	t.Parallel()
	e, pool := newRealEnv(t)
	tok := e.token(t, "editor-1", api.RoleEditor)
	do := func(path, body, key string) response {
		return e.do(t, req{method: http.MethodPost, path: path, body: body, bearer: tok, headers: jsonHeaders("Idempotency-Key", key)})
	}
	first := do("/v1/programs", programBody, "create-1")
	pid := checkWrite(t, e, first, http.StatusCreated, []string{"id", "position", "version"})["id"].(string)
	ep := do("/v1/programs/"+pid+"/episodes", `{"title":"Pilot","number":1,"duration_seconds":60}`, "ep-1")
	checkWrite(t, e, ep, http.StatusCreated, []string{"id", "position", "program_id", "version"})
	events := countEvents(t, pool)

	sameResponse(t, first, do("/v1/programs", programBody, "create-1"))
	sameResponse(t, ep, do("/v1/programs/"+pid+"/episodes", `{"title":"Pilot","number":1,"duration_seconds":60}`, "ep-1"))
	if n := countEvents(t, pool); n != events {
		t.Fatalf("replays appended %d events", n-events)
	}

	// A request that crashed after appending but before its response was stored: its
	// claim is gone (here: deleted; in production: its lease lapsed). The retry runs
	// the command again, and the ids derived from the key make it append nothing and
	// report the same program and episode.
	if _, err := pool.Exec(context.Background(), `DELETE FROM idempotency_keys`); err != nil {
		t.Fatal(err)
	}
	again := do("/v1/programs", programBody, "create-1")
	if again.status != http.StatusCreated || again.json(t)["id"] != pid {
		t.Fatalf("re-run create: %d %s", again.status, again.body)
	}
	epAgain := do("/v1/programs/"+pid+"/episodes", `{"title":"Pilot","number":1,"duration_seconds":60}`, "ep-1")
	if epAgain.status != http.StatusCreated || epAgain.json(t)["id"] != ep.json(t)["id"] {
		t.Fatalf("re-run add episode: %d %s", epAgain.status, epAgain.body)
	}
	if n := countEvents(t, pool); n != events {
		t.Fatalf("re-run commands appended %d events", n-events)
	}
	// The same key with another body is refused, and appends nothing either.
	do("/v1/programs", `{"title":"Else","category":"news","language":"en"}`, "create-1").problem(t, http.StatusConflict)
	if n := countEvents(t, pool); n != events {
		t.Fatal("a reused key appended events")
	}
	// Once the key's record has expired (24 h), the key may serve another request:
	// its ids derive from the key and the request, so it runs as a new command
	// rather than being taken by the event store for the first one.
	if _, err := pool.Exec(context.Background(), `UPDATE idempotency_keys SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	other := do("/v1/programs", `{"title":"Else","category":"news","language":"en"}`, "create-1")
	if other.status != http.StatusCreated || other.json(t)["id"] == pid {
		t.Fatalf("a key used again after its expiry for another program: %d %s (first program %s)", other.status, other.body, pid)
	}
	if n := countEvents(t, pool); n != events+1 {
		t.Fatalf("the new command appended %d events, want 1", n-events)
	}
}
