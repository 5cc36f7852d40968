package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	"github.com/mediamesh/mediamesh/projections/rebuild"
)

// sample is one line of the Prometheus text format: name{labels} value.
type sample struct {
	name   string
	labels string
	value  float64
}

// scrape reads GET /metrics.
func scrape(t *testing.T, base string) []sample {
	t.Helper()
	code, hdr, body := call(t, "GET", base+"/metrics", "", "")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", code, hdr.Get("Content-Type"))
	}
	var out []sample
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		name, labels := line[:sp], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = name[:i], name[i:]
		}
		out = append(out, sample{name: name, labels: labels, value: v})
	}
	return out
}

// value returns the sample of name whose labels contain every one of want, and
// whether there is one.
func value(ss []sample, name string, want ...string) (float64, bool) {
	for _, s := range ss {
		if s.name != name {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(s.labels, w)
		}
		if ok {
			return s.value, true
		}
	}
	return 0, false
}

// getJSON sends a GET with token and decodes a 200 answer into v.
func getJSON(t *testing.T, u, token string, v any) {
	t.Helper()
	code, _, body := call(t, "GET", u, token, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", u, err, body)
	}
}

// waitFor polls cond every 25 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last state: %s", what, timeout, state)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestServeOperations runs `serve --role all` and checks what ops see: the
// Prometheus metrics of a create and a publish (requests by route, appends, applied
// events, freshness, projection position and lag, pool), the admin projections list,
// a blue/green rebuild of the catalog through the admin API (202, followed until
// completed, after which the catalog's new version serves the program and takes
// new writes), and the `projections` subcommands against the same database.
func TestServeOperations(t *testing.T) {
	t.Parallel()
	pool, dbURL := pgtest.NewDB(t)
	vars := serverVars(t, dbURL)
	base, stop, logs := startServe(t, vars, "--role", "all")
	editor, admin := mintToken(t, vars, "editor"), mintToken(t, vars, "admin")

	create := func(title string) (string, int64) {
		t.Helper()
		code, _, body := call(t, "POST", base+"/v1/programs", editor, fmt.Sprintf(`{"title":%q,"category":"documentary","language":"en"}`, title))
		if code != http.StatusCreated {
			t.Fatalf("POST /v1/programs: %d %s", code, body)
		}
		var res struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatal(err)
		}
		code, _, body = call(t, "POST", base+"/v1/programs/"+res.ID+"/publish", editor, "")
		if code != http.StatusOK {
			t.Fatalf("publish: %d %s", code, body)
		}
		var pub struct {
			Position int64 `json:"position"`
		}
		if err := json.Unmarshal(body, &pub); err != nil || pub.Position <= 0 {
			t.Fatalf("publish response %s: %v", body, err)
		}
		return res.ID, pub.Position
	}
	id, position := create("Operated")

	// The projections catch up with the publish (a bounded wait), and the metrics
	// say so.
	var ss []sample
	waitFor(t, 15*time.Second, "catalog and editorial v1 apply the publish", func() (bool, string) {
		ss = scrape(t, base)
		pos, _ := value(ss, "mediamesh_projection_position", `projection="catalog"`, `version="1"`)
		ed, _ := value(ss, "mediamesh_projection_position", `projection="editorial"`, `version="1"`)
		return int64(pos) == position && int64(ed) == position, fmt.Sprintf("positions %v and %v, want %d", pos, ed, position)
	})
	checks := []struct {
		name   string
		labels []string
		ok     func(v float64) bool
		want   string
	}{
		{"mediamesh_http_requests_total", []string{`method="POST"`, `route="/v1/programs"`, `status="201"`}, func(v float64) bool { return v == 1 }, "1"},
		{"mediamesh_http_requests_total", []string{`method="POST"`, `route="/v1/programs/:id/publish"`, `status="200"`}, func(v float64) bool { return v == 1 }, "1"},
		{"mediamesh_http_request_duration_seconds_count", []string{`route="/v1/programs"`}, func(v float64) bool { return v == 1 }, "1"},
		{"mediamesh_eventstore_append_duration_seconds_count", []string{`result="ok"`}, func(v float64) bool { return v == 2 }, "2 appends"},
		{"mediamesh_projection_events_applied_total", []string{`projection="catalog"`}, func(v float64) bool { return v == 2 }, "2 events"},
		{"mediamesh_freshness_seconds_count", []string{`sink="catalog"`}, func(v float64) bool { return v == 2 }, "2 events"},
		{"mediamesh_freshness_seconds_sum", []string{`sink="editorial"`}, func(v float64) bool { return v > 0 && v < 30 }, "between 0 and 30 s"},
		{"mediamesh_projection_lag_events", []string{`projection="catalog"`, `version="1"`}, func(v float64) bool { return v == 0 }, "0"},
		{"mediamesh_projection_lag_seconds", []string{`projection="editorial"`}, func(v float64) bool { return v >= 0 && v < 30 }, "under 30 s"},
		{"mediamesh_projection_serving", []string{`projection="search"`, `version="1"`}, func(v float64) bool { return v == 1 }, "1"},
		{"mediamesh_projection_dead_letters", []string{`projection="catalog"`}, func(v float64) bool { return v == 0 }, "0"},
		{"mediamesh_projection_position", []string{`projection="thumbnails"`}, func(v float64) bool { return v >= 0 }, "present"},
		{"mediamesh_db_pool_max_conns", []string{`pool="primary"`}, func(v float64) bool { return v > 0 }, "above 0"},
	}
	for _, c := range checks {
		v, ok := value(ss, c.name, c.labels...)
		if !ok || !c.ok(v) {
			t.Errorf("%s%v = %v (present %v), want %s", c.name, c.labels, v, ok, c.want)
		}
	}
	// Label values are copies, never views into a reused request buffer (which once
	// turned "POST" into "GETT" in a later scrape).
	for _, s := range scrape(t, base) {
		if s.name == "mediamesh_http_requests_total" && !strings.Contains(s.labels, `method="GET"`) && !strings.Contains(s.labels, `method="POST"`) {
			t.Errorf("unexpected method label: %s%s", s.name, s.labels)
		}
	}

	// The admin list: every projection, with rebuildable and lag.
	var sts []rebuild.Status
	getJSON(t, base+"/v1/admin/projections", admin, &sts)
	rebuildable := map[string]bool{}
	for _, s := range sts {
		rebuildable[s.Name] = s.Rebuildable
		if s.LagEvents < 0 || s.LagSeconds < 0 || s.HeadPosition < s.Position {
			t.Errorf("status row %+v: negative lag or position past the head", s)
		}
	}
	for name, want := range map[string]bool{"catalog": true, "editorial": true, "search": true, "thumbnails": false, "engagement": false} {
		if got, ok := rebuildable[name]; !ok || got != want {
			t.Errorf("admin list: %s rebuildable %v (listed %v), want %v; list %+v", name, got, ok, want, sts)
		}
	}
	if code, _, _ := call(t, "GET", base+"/v1/admin/projections", editor, ""); code != http.StatusForbidden {
		t.Errorf("admin list with an editor token: %d, want 403", code)
	}

	// A blue/green rebuild of the catalog, followed through the API.
	code, _, body := call(t, "POST", base+"/v1/admin/projections/catalog/rebuild", admin, "")
	if code != http.StatusAccepted {
		t.Fatalf("POST rebuild: %d %s", code, body)
	}
	var started struct {
		RebuildID string `json:"rebuild_id"`
	}
	if err := json.Unmarshal(body, &started); err != nil || started.RebuildID == "" {
		t.Fatalf("rebuild response %s: %v", body, err)
	}
	if code, _, _ := call(t, "POST", base+"/v1/admin/projections/engagement/rebuild", admin, ""); code != http.StatusUnprocessableEntity {
		t.Errorf("rebuild of a telemetry aggregate: %d, want 422", code)
	}
	var p rebuild.Progress
	waitFor(t, 30*time.Second, "catalog rebuild completes", func() (bool, string) {
		getJSON(t, base+"/v1/admin/projections/catalog/rebuild", admin, &p)
		if p.Status == rebuild.RebuildFailed {
			t.Fatalf("rebuild failed: %+v\n%s", p, logs.String())
		}
		return p.Status == rebuild.RebuildCompleted, fmt.Sprintf("%+v", p)
	})
	if p.RebuildID != started.RebuildID || p.ToVersion != 2 || p.Processed != 2 || p.Total != 2 {
		t.Errorf("completed rebuild %+v, want %s to v2 over 2 events", p, started.RebuildID)
	}

	// The new version serves the program, and takes writes made after the switch.
	ctx := context.Background()
	v, err := rebuild.ServingVersion(ctx, pool, "catalog")
	if err != nil || v != 2 {
		t.Fatalf("catalog serving version %d, %v; want 2", v, err)
	}
	router, err := readmodel.NewRouter(pool, nil, readmodel.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tables, err := catalogTables(v)
	if err != nil {
		t.Fatal(err)
	}
	cat, err := readmodel.NewCatalog(router, tables)
	if err != nil {
		t.Fatal(err)
	}
	later, _ := create("After the switch")
	for _, want := range []struct{ id, title string }{{id, "Operated"}, {later, "After the switch"}} {
		waitFor(t, 15*time.Second, "catalog v2 serves "+want.title, func() (bool, string) {
			prog, _, _, err := cat.Program(ctx, want.id, nil)
			return err == nil && prog != nil && prog.Title == want.title, fmt.Sprintf("%+v, %v", prog, err)
		})
	}
	code, _, body = call(t, "GET", base+"/v1/cms/programs?status=published", editor, "")
	if code != http.StatusOK || !strings.Contains(string(body), id) {
		t.Errorf("editorial list after the catalog rebuild: %d %s", code, body)
	}
	// Discovery follows the switch: the program published after it (only version 2
	// has it: version 1 stopped at the switch) is served by id and in browse.
	waitFor(t, 15*time.Second, "discovery reads catalog v2", func() (bool, string) {
		return strings.Contains(logs.String(), `"msg":"discovery switched"`), "no switch logged"
	})
	// Its caches were warmed from the new version before it was swapped in.
	if !regexp.MustCompile(`"msg":"discovery switched"[^\n]*"warmed":[1-9]`).MatchString(logs.String()) {
		t.Errorf("discovery switched without warming its cache:\n%s", logs.String())
	}
	for _, path := range []string{"/v1/programs/" + later, "/v1/programs?category=documentary"} {
		code, _, body = call(t, "GET", base+path, "", "")
		if code != http.StatusOK || !strings.Contains(string(body), later) || !strings.Contains(string(body), "After the switch") {
			t.Errorf("GET %s after the catalog rebuild: %d %s", path, code, body)
		}
	}

	// The CLI, on the same database while the server runs.
	te := newTestEnv(vars)
	if code := runCmd(t, te, "projections", "status"); code != 0 {
		t.Fatalf("projections status: exit %d: %s", code, te.stderr)
	}
	out := te.stdout.String()
	for _, want := range []string{"NAME", "LAG EVENTS", "DEAD LETTERS"} {
		if !strings.Contains(out, want) {
			t.Errorf("projections status lacks %q:\n%s", want, out)
		}
	}
	rows := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) != 9 {
			t.Fatalf("status row %q: %d columns, want 9", line, len(f))
		}
		rows[f[0]+"/v"+f[1]] = f[2] + " " + f[3]
	}
	for key, want := range map[string]string{
		"catalog/v1": "retiring yes", "catalog/v2": "serving yes", "editorial/v1": "serving yes",
		"search/v1": "serving yes", "thumbnails/v1": "running no", "engagement/v1": "starting no",
	} {
		if rows[key] != want {
			t.Errorf("projections status %s: %q, want %q\n%s", key, rows[key], want, out)
		}
	}
	te = newTestEnv(vars)
	if code := runCmd(t, te, "projections", "dlq", "list"); code != 0 || !strings.Contains(te.stdout.String(), "no dead letters") {
		t.Errorf("projections dlq list: exit %d: %s %s", code, te.stdout, te.stderr)
	}
	te = newTestEnv(vars)
	if code := runCmd(t, te, "projections", "rebuild", "editorial", "--wait"); code != 0 || !strings.Contains(te.stdout.String(), "editorial v2 serves") {
		t.Errorf("projections rebuild editorial --wait: exit %d: %s %s", code, te.stdout, te.stderr)
	}
	// The editorial list follows its projection's switch.
	waitFor(t, 15*time.Second, "editorial list reads v2", func() (bool, string) {
		return strings.Contains(logs.String(), `"msg":"editorial list switched","version":2`), "no switch logged"
	})
	code, _, body = call(t, "GET", base+"/v1/cms/programs?status=published", editor, "")
	if code != http.StatusOK || !strings.Contains(string(body), later) {
		t.Errorf("editorial list after its rebuild: %d %s", code, body)
	}
	if code := stop(); code != 0 {
		t.Errorf("serve exit code %d:\n%s", code, logs.String())
	}
}

// TestProjectionsUsage: bad arguments answer with the usage and exit 2, without a
// database; an unknown projection is an error (exit 1) naming it.
func TestProjectionsUsage(t *testing.T) {
	t.Parallel()
	unreachable := map[string]string{config.KeyDatabaseURL: "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"projections"}, 2, "usage: mediamesh projections"},
		{[]string{"projections", "rebuild"}, 2, "rebuild takes one projection name"},
		{[]string{"projections", "dlq"}, 2, "dlq needs list or replay"},
		{[]string{"projections", "frobnicate"}, 2, "unknown command"},
		{[]string{"projections", "status"}, 1, "projections failed"},
	}
	for _, tt := range tests {
		te := newTestEnv(unreachable)
		if code := runCmd(t, te, tt.args...); code != tt.code || !strings.Contains(te.stderr.String(), tt.want) {
			t.Errorf("%v: exit %d, want %d; stderr %s", tt.args, code, tt.code, te.stderr)
		}
	}
}

// TestServeProjectorRole: `serve --role projector` runs the projections and answers
// only health and metrics; a program written by a command role on the same
// database is applied by it.
func TestServeProjectorRole(t *testing.T) {
	t.Parallel()
	_, dbURL := pgtest.NewDB(t)
	vars := serverVars(t, dbURL)
	cmdBase, _, _ := startServe(t, vars, "--role", "command")
	projBase, stop, logs := startServe(t, vars, "--role", "projector")

	code, _, body := call(t, "GET", projBase+"/health/ready", "", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"eventstore":"ok"`) {
		t.Errorf("projector /health/ready: %d %s", code, body)
	}
	editor := mintToken(t, vars, "editor")
	if code, _, _ := call(t, "POST", projBase+"/v1/programs", editor, `{"title":"x","category":"a","language":"en"}`); code != http.StatusNotFound {
		t.Errorf("projector serves commands: %d, want 404", code)
	}
	code, _, body = call(t, "POST", cmdBase+"/v1/programs", editor, `{"title":"Projected","category":"documentary","language":"en"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/programs on the command role: %d %s", code, body)
	}
	var res struct {
		Position int64 `json:"position"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the projector applies the create", func() (bool, string) {
		pos, _ := value(scrape(t, projBase), "mediamesh_projection_position", `projection="editorial"`, `version="1"`)
		return int64(pos) == res.Position, fmt.Sprintf("position %v, want %d", pos, res.Position)
	})
	if code := stop(); code != 0 {
		t.Errorf("projector exit code %d:\n%s", code, logs.String())
	}
}
