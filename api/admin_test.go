package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/projections/rebuild"
)

// fakeAdmin is a projection admin with a rebuildable "catalog", a telemetry
// aggregate "engagement", and at most one running rebuild per name.
type fakeAdmin struct {
	mu       sync.Mutex
	rebuilds map[string]rebuild.Progress
	fail     error
}

func newFakeAdmin() *fakeAdmin { return &fakeAdmin{rebuilds: map[string]rebuild.Progress{}} }

func (a *fakeAdmin) Status(context.Context) ([]rebuild.Status, error) {
	if a.fail != nil {
		return nil, a.fail
	}
	return []rebuild.Status{
		{Name: "catalog", Version: 1, Status: rebuild.StatusServing, Rebuildable: true, Position: 10 << 20, HeadPosition: 12 << 20, LagEvents: 3, LagSeconds: 0.25, DeadLetters: 1},
		{Name: "engagement", Version: 1, Status: rebuild.StatusRunning},
	}, nil
}

func (a *fakeAdmin) StartRebuild(_ context.Context, name string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch name {
	case "catalog":
	case "engagement":
		return "", fmt.Errorf("rebuild %s: %w", name, rebuild.ErrNotRebuildable)
	default:
		return "", fmt.Errorf("rebuild %s: %w", name, rebuild.ErrUnknownProjection)
	}
	if p, ok := a.rebuilds[name]; ok && p.Status == rebuild.RebuildRunning {
		return "", fmt.Errorf("rebuild %s: %w", name, rebuild.ErrRebuildRunning)
	}
	id := fmt.Sprintf("0190f1f4-0000-7000-8000-%012d", len(a.rebuilds)+1)
	a.rebuilds[name] = rebuild.Progress{RebuildID: id, Status: rebuild.RebuildRunning, Processed: 40, Total: 100,
		StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), FromVersion: 1, ToVersion: 2}
	return id, nil
}

func (a *fakeAdmin) Progress(_ context.Context, name string) (rebuild.Progress, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if name != "catalog" && name != "engagement" {
		return rebuild.Progress{}, rebuild.ErrUnknownProjection
	}
	p, ok := a.rebuilds[name]
	if !ok {
		return rebuild.Progress{}, rebuild.ErrNoRebuild
	}
	eta := 1.5
	p.ETASeconds = &eta
	return p, nil
}

func TestAdminProjectionEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin, editor := e.token(t, "ops", api.RoleAdmin), e.token(t, "ed", api.RoleEditor)
	const base = "/v1/admin/projections"

	// Auth first: 401 without a token, 403 below admin, on every route.
	for _, r := range []req{
		{method: http.MethodGet, path: base},
		{method: http.MethodPost, path: base + "/catalog/rebuild"},
		{method: http.MethodGet, path: base + "/catalog/rebuild"},
	} {
		e.do(t, r).problem(t, http.StatusUnauthorized)
		r.bearer = editor
		e.do(t, r).problem(t, http.StatusForbidden)
	}

	res := e.do(t, req{method: http.MethodGet, path: base, bearer: admin})
	if res.status != http.StatusOK || res.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status: %d %s", res.status, res.body)
	}
	var rows []map[string]any
	if err := json.Unmarshal(res.body, &rows); err != nil {
		t.Fatal(err)
	}
	want := []string{"name", "version", "status", "rebuildable", "position", "head_position", "lag_events", "lag_seconds", "dead_letters"}
	if len(rows) != 2 || len(rows[0]) != len(want) {
		t.Fatalf("rows: %s", res.body)
	}
	for _, k := range want {
		if _, ok := rows[0][k]; !ok {
			t.Errorf("row lacks %s: %s", k, res.body)
		}
	}
	if rows[0]["lag_events"] != 3.0 || rows[0]["rebuildable"] != true || rows[1]["rebuildable"] != false {
		t.Errorf("rows: %s", res.body)
	}

	// Never rebuilt: 404. Then start: 202 with the id and where to follow it.
	e.do(t, req{method: http.MethodGet, path: base + "/catalog/rebuild", bearer: admin}).problem(t, http.StatusNotFound)
	res = e.do(t, req{method: http.MethodPost, path: base + "/catalog/rebuild", bearer: admin})
	if res.status != http.StatusAccepted || res.header.Get("Location") != base+"/catalog/rebuild" {
		t.Fatalf("start: %d %v %s", res.status, res.header, res.body)
	}
	id, _ := res.json(t)["rebuild_id"].(string)
	if id == "" {
		t.Fatalf("start: %s", res.body)
	}
	res = e.do(t, req{method: http.MethodGet, path: base + "/catalog/rebuild", bearer: admin})
	if res.status != http.StatusOK {
		t.Fatalf("progress: %d %s", res.status, res.body)
	}
	got := res.json(t)
	for k, v := range map[string]any{"rebuild_id": id, "status": "running", "processed": 40.0, "total": 100.0,
		"started_at": "2026-01-02T03:04:05Z", "eta_seconds": 1.5} {
		if got[k] != v {
			t.Errorf("progress %s = %v, want %v (%s)", k, got[k], v, res.body)
		}
	}
	if _, ok := got["error"]; ok {
		t.Errorf("a running rebuild reports an error: %s", res.body)
	}

	tests := []struct {
		method, path string
		status       int
		kind         string
	}{
		{http.MethodPost, base + "/catalog/rebuild", http.StatusConflict, "rebuild-running"},
		{http.MethodPost, base + "/engagement/rebuild", http.StatusUnprocessableEntity, "not-rebuildable"},
		{http.MethodPost, base + "/nope/rebuild", http.StatusNotFound, "not-found"},
		{http.MethodGet, base + "/nope/rebuild", http.StatusNotFound, "not-found"},
		{http.MethodGet, base + "/engagement/rebuild", http.StatusNotFound, "not-found"},
		{http.MethodPost, base + "/Bad%20Name/rebuild", http.StatusNotFound, "not-found"},
		{http.MethodDelete, base + "/catalog/rebuild", http.StatusMethodNotAllowed, "method-not-allowed"},
	}
	for _, tt := range tests {
		p := e.do(t, req{method: tt.method, path: tt.path, bearer: admin}).problem(t, tt.status)
		if p.Type != "urn:mediamesh:problem:"+tt.kind {
			t.Errorf("%s %s: type %s, want %s", tt.method, tt.path, p.Type, tt.kind)
		}
	}
}

// TestAdminStatusFailureIsA500ThatSaysNothing: the admin's own error is logged,
// never sent.
func TestAdminStatusFailureIsA500ThatSaysNothing(t *testing.T) {
	t.Parallel()
	a := newFakeAdmin()
	a.fail = errors.New("connect to 10.0.0.7: password authentication failed")
	e := newEnv(t, withDeps(func(d *api.Deps) { d.Admin = a }))
	p := e.do(t, req{method: http.MethodGet, path: "/v1/admin/projections", bearer: e.token(t, "ops", api.RoleAdmin)}).problem(t, http.StatusInternalServerError)
	if p.Detail != "an internal error occurred" {
		t.Errorf("detail %q", p.Detail)
	}
}
