package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/api"
)

func TestEditorialReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.token(t, "alice", api.RoleEditor)
	good := e.tokens.Sign(api.WritePoint{StreamID: "program-" + knownProgram, Version: 7, Position: 9})
	for _, tc := range []struct {
		path     string
		wantKeys []string
	}{
		{"/v1/cms/programs/" + knownProgram, []string{"id", "title", "description", "category", "language", "tags", "external_id", "status", "version", "created_at", "updated_at", "published_at", "episodes"}},
		{"/v1/cms/episodes/" + knownEpisode, []string{"id", "program_id", "title", "number", "season", "description", "duration_seconds", "external_id", "status", "version", "created_at", "updated_at", "published_at"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			res := e.do(t, req{method: http.MethodGet, path: tc.path, bearer: tok})
			if res.status != http.StatusOK || res.header.Get("ETag") != `"7"` || res.header.Get("Cache-Control") != "private, no-cache" {
				t.Fatalf("%d ETag=%q Cache-Control=%q %s", res.status, res.header.Get("ETag"), res.header.Get("Cache-Control"), res.body)
			}
			body := res.json(t)
			for _, k := range tc.wantKeys {
				if _, ok := body[k]; !ok {
					t.Errorf("body lacks %q: %s", k, res.body)
				}
			}
			for _, inm := range []string{`"7"`, `W/"7"`, `"1", "7"`, `*`} {
				res := e.do(t, req{method: http.MethodGet, path: tc.path, bearer: tok, headers: map[string]string{"If-None-Match": inm}})
				if res.status != http.StatusNotModified || len(res.body) != 0 || res.header.Get("ETag") != `"7"` {
					t.Fatalf("If-None-Match %s: %d %q", inm, res.status, res.body)
				}
			}
			res = e.do(t, req{method: http.MethodGet, path: tc.path, bearer: tok, headers: map[string]string{"If-None-Match": `"6"`}})
			if res.status != http.StatusOK {
				t.Fatalf("stale If-None-Match: %d", res.status)
			}
			// A valid consistency token needs no wait: the event store is current.
			res = e.do(t, req{method: http.MethodGet, path: tc.path, bearer: tok, headers: map[string]string{api.HeaderConsistencyToken: good}})
			if res.status != http.StatusOK {
				t.Fatalf("with a token: %d %s", res.status, res.body)
			}
		})
	}
	t.Run("history", func(t *testing.T) {
		res := e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs/" + knownProgram + "/history", bearer: tok})
		if res.status != http.StatusOK || res.header.Get("ETag") != `"2"` || !strings.HasPrefix(string(res.body), "[") {
			t.Fatalf("%d %q %s", res.status, res.header.Get("ETag"), res.body)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		for _, p := range []string{"/v1/cms/programs/" + knownEpisode, "/v1/cms/episodes/" + knownProgram, "/v1/cms/programs/" + knownEpisode + "/history", "/v1/cms/programs/nope"} {
			e.do(t, req{method: http.MethodGet, path: p, bearer: tok}).problem(t, http.StatusNotFound)
		}
	})
	t.Run("no token", func(t *testing.T) {
		e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs/" + knownProgram}).problem(t, http.StatusUnauthorized)
	})
}

// fakeLister is a ProgramLister; waitErr is what WaitFor returns (it blocks until
// ctx ends when block is set).
type fakeLister struct {
	mu      sync.Mutex
	calls   []string
	waits   []api.WritePoint
	block   bool
	waitErr error
}

func (l *fakeLister) ListPrograms(_ context.Context, status, q string, page, limit int) (any, int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, status+"|"+q)
	if page > 1 {
		return nil, 1, nil // a typed nil must still be an empty array
	}
	return []map[string]any{{"id": knownProgram, "title": "T"}}, 1, nil
}

func (l *fakeLister) WaitFor(ctx context.Context, streamID string, version, position int64) error {
	l.mu.Lock()
	l.waits = append(l.waits, api.WritePoint{StreamID: streamID, Version: version, Position: position})
	block, err := l.block, l.waitErr
	l.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func TestProgramList(t *testing.T) {
	t.Parallel()
	t.Run("not registered without a lister", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs", bearer: e.token(t, "a", api.RoleEditor)}).problem(t, http.StatusNotFound)
	})
	l := &fakeLister{}
	e := newEnv(t, withLister(l))
	tok := e.token(t, "a", api.RoleEditor)

	res := e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs?status=published&q=news", bearer: tok})
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	body := res.json(t)
	if body["page"] != 1.0 || body["limit"] != 20.0 || body["total"] != 1.0 || len(body["items"].([]any)) != 1 {
		t.Fatalf("body %s", res.body)
	}
	if l.calls[0] != "published|news" {
		t.Fatalf("lister called with %v", l.calls)
	}
	res = e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs?page=2&limit=50", bearer: tok})
	if res.status != http.StatusOK || !strings.Contains(string(res.body), `"items":[]`) {
		t.Fatalf("page 2: %d %s", res.status, res.body)
	}
	for _, q := range []string{"limit=0", "limit=51", "limit=-1", "limit=abc", "page=0", "page=1.5", "status=deleted", "q=" + strings.Repeat("x", 201)} {
		p := e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs?" + q, bearer: tok}).problem(t, http.StatusBadRequest)
		if len(p.Errors) != 1 {
			t.Fatalf("%s: %+v", q, p)
		}
	}
	if len(l.calls) != 2 {
		t.Fatalf("invalid queries reached the lister: %v", l.calls)
	}

	// A consistency token: waited for, then listed.
	wp := api.WritePoint{StreamID: "program-" + knownProgram, Version: 3, Position: 42}
	res = e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs", bearer: tok,
		headers: map[string]string{api.HeaderConsistencyToken: e.tokens.Sign(wp)}})
	if res.status != http.StatusOK || res.header.Get("Cache-Control") != "private, no-cache" || l.waits[0] != wp {
		t.Fatalf("%d %v %s", res.status, l.waits, res.body)
	}
	e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs", bearer: tok,
		headers: map[string]string{api.HeaderConsistencyToken: "forged.token"}}).problem(t, http.StatusBadRequest)
}

func TestProgramListConsistencyWaitTimesOut(t *testing.T) {
	t.Parallel()
	l := &fakeLister{block: true}
	e := newEnv(t, withLister(l), withConfig(func(c *api.Config) { c.ConsistencyWait = 50 * time.Millisecond }))
	res := e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs", bearer: e.token(t, "a", api.RoleEditor),
		headers: map[string]string{api.HeaderConsistencyToken: e.tokens.Sign(api.WritePoint{StreamID: "program-x", Version: 1, Position: 1})}})
	res.problem(t, http.StatusServiceUnavailable)
	if res.header.Get("Retry-After") == "" || len(l.calls) != 0 {
		t.Fatalf("Retry-After %q, list calls %v", res.header.Get("Retry-After"), l.calls)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	ok := api.ReadinessCheck{Name: "postgres", Check: func(context.Context) error { return nil }}
	down := api.ReadinessCheck{Name: "redis", Check: func(context.Context) error { return errors.New("dial tcp 10.1.2.3:6379: refused") }}
	hang := api.ReadinessCheck{Name: "kafka", Check: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
	panicky := api.ReadinessCheck{Name: "search", Check: func(context.Context) error { panic("oops") }}

	e := newEnv(t, withReadiness(ok))
	if res := e.do(t, req{method: http.MethodGet, path: "/health/live"}); res.status != 200 || res.json(t)["status"] != "ok" {
		t.Fatalf("live: %d %s", res.status, res.body)
	}
	if res := e.do(t, req{method: http.MethodGet, path: "/health/ready"}); res.status != 200 || !strings.Contains(string(res.body), `"postgres":"ok"`) {
		t.Fatalf("ready: %d %s", res.status, res.body)
	}

	e = newEnv(t, withReadiness(ok, down, hang, panicky), withConfig(func(c *api.Config) { c.ReadinessTimeout = 100 * time.Millisecond }))
	res := e.do(t, req{method: http.MethodGet, path: "/health/ready"})
	p := res.problem(t, http.StatusServiceUnavailable)
	for _, name := range []string{"redis", "kafka", "search"} {
		if !strings.Contains(p.Detail, name) {
			t.Errorf("detail %q does not name %s", p.Detail, name)
		}
	}
	if strings.Contains(p.Detail, "postgres") || strings.Contains(p.Detail, "10.1.2.3") {
		t.Errorf("detail %q names a healthy dependency or leaks an address", p.Detail)
	}
}
