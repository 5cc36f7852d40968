package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkWrite checks a command response: status, body shape, ETag and a consistency
// token that verifies and names the write.
func checkWrite(t *testing.T, e *env, res response, status int, wantKeys []string) map[string]any {
	t.Helper()
	if res.status != status {
		t.Fatalf("status %d, want %d: %s", res.status, status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	body := res.json(t)
	if got := keys(body); !reflect.DeepEqual(got, wantKeys) {
		t.Fatalf("body keys %v, want %v (%s)", got, wantKeys, res.body)
	}
	version := int64(body["version"].(float64))
	if res.header.Get("ETag") != fmt.Sprintf(`"%d"`, version) {
		t.Fatalf("ETag %q for version %d", res.header.Get("ETag"), version)
	}
	wp, err := e.tokens.Verify(res.header.Get(api.HeaderConsistencyToken))
	if err != nil {
		t.Fatalf("consistency token: %v", err)
	}
	if wp.Version != version || wp.Position != int64(body["position"].(float64)) || !strings.HasPrefix(wp.StreamID, "program-") {
		t.Fatalf("token names %+v, body %v", wp, body)
	}
	return body
}

func TestCommandsMapHTTPToCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tok := e.token(t, "alice", api.RoleEditor)
	prog := "/v1/programs/" + knownProgram
	ep := "/v1/episodes/" + knownEpisode

	t.Run("create program", func(t *testing.T) {
		res := e.do(t, req{method: http.MethodPost, path: "/v1/programs", bearer: tok,
			headers: jsonHeaders("X-Request-ID", "req-123", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate", "vendor=1"),
			body:    `{"title":"Title","description":"D","category":"news","language":"en","tags":["a","b"],"external_id":"x-1"}`})
		body := checkWrite(t, e, res, http.StatusCreated, []string{"id", "position", "version"})
		if res.header.Get("Location") != "/v1/cms/programs/"+body["id"].(string) {
			t.Fatalf("Location %q", res.header.Get("Location"))
		}
		calls := e.fakes.rec.all()
		cmd := calls[len(calls)-1].(app.CreateProgram)
		want := app.CreateProgram{
			Meta: app.Meta{Actor: "alice", CorrelationID: "req-123",
				TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "vendor=1"},
			Title: "Title", Description: "D", Category: "news", Language: "en", Tags: []string{"a", "b"}, ExternalID: "x-1",
		}
		if !reflect.DeepEqual(cmd, want) {
			t.Fatalf("command\n got %+v\nwant %+v", cmd, want)
		}
		if res.header.Get(api.HeaderRequestID) != "req-123" {
			t.Fatalf("request id not echoed: %q", res.header.Get(api.HeaderRequestID))
		}
	})

	t.Run("patch program sets only the given fields", func(t *testing.T) {
		res := e.do(t, req{method: http.MethodPatch, path: prog, bearer: tok, headers: jsonHeaders("If-Match", `"1"`),
			body: `{"title":"New","tags":[]}`})
		checkWrite(t, e, res, http.StatusOK, []string{"id", "position", "version"})
		calls := e.fakes.rec.all()
		cmd := calls[len(calls)-1].(app.UpdateProgram)
		if cmd.ProgramID != knownProgram || cmd.Title == nil || *cmd.Title != "New" || cmd.Tags == nil || len(*cmd.Tags) != 0 ||
			cmd.Description != nil || cmd.Category != nil || cmd.Language != nil {
			t.Fatalf("command %+v", cmd)
		}
		if cmd.Meta.ExpectedVersion == nil || *cmd.Meta.ExpectedVersion != 1 {
			t.Fatalf("If-Match not passed: %+v", cmd.Meta)
		}
	})

	t.Run("upper-case id is canonicalized", func(t *testing.T) {
		res := e.do(t, req{method: http.MethodPost, path: "/v1/programs/" + strings.ToUpper(knownProgram) + "/publish", bearer: tok,
			headers: map[string]string{"If-Match": "3"}})
		checkWrite(t, e, res, http.StatusOK, []string{"id", "position", "version"})
		calls := e.fakes.rec.all()
		cmd := calls[len(calls)-1].(app.PublishProgram)
		if cmd.ProgramID != knownProgram || *cmd.Meta.ExpectedVersion != 3 {
			t.Fatalf("command %+v", cmd)
		}
	})

	for _, action := range []string{"publish", "unpublish", "archive"} {
		t.Run(action+" program with {}", func(t *testing.T) {
			res := e.do(t, req{method: http.MethodPost, path: prog + "/" + action, bearer: tok, headers: jsonHeaders(), body: `{}`})
			checkWrite(t, e, res, http.StatusOK, []string{"id", "position", "version"})
		})
		t.Run(action+" episode", func(t *testing.T) {
			res := e.do(t, req{method: http.MethodPost, path: ep + "/" + action, bearer: tok})
			body := checkWrite(t, e, res, http.StatusOK, []string{"id", "position", "program_id", "version"})
			if body["id"] != knownEpisode || body["program_id"] != knownProgram {
				t.Fatalf("body %v", body)
			}
		})
	}

	t.Run("add episode", func(t *testing.T) {
		res := e.do(t, req{method: http.MethodPost, path: prog + "/episodes", bearer: tok, headers: jsonHeaders(),
			body: `{"title":"E1","number":1,"season":2,"description":"d","duration_seconds":1800,"external_id":"e-1"}`})
		body := checkWrite(t, e, res, http.StatusCreated, []string{"id", "position", "program_id", "version"})
		if res.header.Get("Location") != "/v1/cms/episodes/"+body["id"].(string) || body["program_id"] != knownProgram {
			t.Fatalf("Location %q body %v", res.header.Get("Location"), body)
		}
		calls := e.fakes.rec.all()
		cmd := calls[len(calls)-1].(app.AddEpisode)
		if cmd.ProgramID != knownProgram || cmd.Title != "E1" || cmd.Number != 1 || cmd.Season != 2 || cmd.DurationSeconds != 1800 || cmd.ExternalID != "e-1" {
			t.Fatalf("command %+v", cmd)
		}
	})

	t.Run("patch episode", func(t *testing.T) {
		res := e.do(t, req{method: http.MethodPatch, path: ep, bearer: tok, headers: jsonHeaders(), body: `{"season":3,"number":4}`})
		checkWrite(t, e, res, http.StatusOK, []string{"id", "position", "program_id", "version"})
		calls := e.fakes.rec.all()
		cmd := calls[len(calls)-1].(app.UpdateEpisode)
		if cmd.EpisodeID != knownEpisode || cmd.Season == nil || *cmd.Season != 3 || *cmd.Number != 4 || cmd.Title != nil {
			t.Fatalf("command %+v", cmd)
		}
	})

	t.Run("admin may run commands", func(t *testing.T) {
		res := e.do(t, req{method: http.MethodPost, path: prog + "/publish", bearer: e.token(t, "root", api.RoleAdmin)})
		checkWrite(t, e, res, http.StatusOK, []string{"id", "position", "version"})
	})
}

// TestDomainErrorsMapToStatuses runs every error the command side can return
// through the one mapping function.
func TestDomainErrorsMapToStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status int
		kind   string
	}{
		{"validation", &program.ValidationError{Fields: []program.FieldError{{Field: "title", Message: "must not be empty"}, {Field: "language", Message: "bad"}}}, 400, "validation"},
		{"not found", fmt.Errorf("program x: %w", app.ErrNotFound), 404, "not-found"},
		{"episode not found", fmt.Errorf("episode x: %w", program.ErrEpisodeNotFound), 404, "not-found"},
		{"precondition", fmt.Errorf("stale: %w", app.ErrPreconditionFailed), 412, "precondition-failed"},
		{"version conflict", fmt.Errorf("after 6 attempts: %w", events.ErrVersionConflict), 409, "version-conflict"},
		{"duplicate number", fmt.Errorf("s1e1: %w", program.ErrDuplicateEpisodeNumber), 409, "duplicate-episode-number"},
		{"key reused", fmt.Errorf("x: %w", app.ErrIdempotencyKeyReused), 409, "idempotency-key-reused"},
		{"invalid state", fmt.Errorf("publish program x: it is archived: %w", program.ErrInvalidState), 422, "invalid-state"},
		{"timeout", fmt.Errorf("append: %w", context.DeadlineExceeded), 503, "timeout"},
		{"anything else", errors.New("pq: password authentication failed for user secretuser at 10.0.0.5"), 500, "internal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.fakes.publishProgram.fn = func(context.Context, app.PublishProgram) (app.Result, error) { return app.Result{}, tc.err }
			res := e.do(t, req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/publish", bearer: e.token(t, "a", api.RoleEditor)})
			p := res.problem(t, tc.status)
			if p.Type != "urn:mediamesh:problem:"+tc.kind {
				t.Fatalf("type %q, want %s", p.Type, tc.kind)
			}
			if res.header.Get("ETag") != "" || res.header.Get(api.HeaderConsistencyToken) != "" {
				t.Fatal("an error response carries write headers")
			}
			var ve *program.ValidationError
			if errors.As(tc.err, &ve) {
				if len(p.Errors) != 2 || p.Errors[0] != (api.FieldError{Field: "title", Message: "must not be empty"}) {
					t.Fatalf("field errors %+v", p.Errors)
				}
			}
			if tc.status == 500 && (strings.Contains(string(res.body), "secretuser") || strings.Contains(string(res.body), "10.0.0.5")) {
				t.Fatalf("500 leaks its cause: %s", res.body)
			}
			if tc.status == 500 && !strings.Contains(e.logs.String(), "secretuser") {
				t.Fatal("the cause of a 500 is not logged")
			}
		})
	}
}

func TestPanicIsA500ThatLeaksNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.fakes.archiveProgram.fn = func(context.Context, app.ArchiveProgram) (app.Result, error) {
		panic("boom: secret internal state 0xdeadbeef")
	}
	res := e.do(t, req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/archive", bearer: e.token(t, "a", api.RoleEditor)})
	res.problem(t, http.StatusInternalServerError)
	if strings.Contains(string(res.body), "deadbeef") || strings.Contains(string(res.body), "goroutine") {
		t.Fatalf("panic leaked: %s", res.body)
	}
	if !strings.Contains(e.logs.String(), "deadbeef") {
		t.Fatal("panic not logged")
	}
	// The server keeps serving.
	res = e.do(t, req{method: http.MethodGet, path: "/health/live"})
	if res.status != http.StatusOK {
		t.Fatalf("after a panic: %d", res.status)
	}
}

func TestRequestIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res := e.do(t, req{method: http.MethodGet, path: "/health/live", headers: map[string]string{"X-Request-ID": "abc-123"}})
	if res.header.Get(api.HeaderRequestID) != "abc-123" {
		t.Fatalf("request id %q", res.header.Get(api.HeaderRequestID))
	}
	for _, bad := range []string{"has space", strings.Repeat("x", 200), "new\"line"} {
		res := e.do(t, req{method: http.MethodGet, path: "/health/live", headers: map[string]string{"X-Request-ID": bad}})
		if got := res.header.Get(api.HeaderRequestID); got == "" || got == bad {
			t.Fatalf("request id %q kept as %q", bad, got)
		}
	}
	if !strings.Contains(e.logs.String(), `"request_id":"abc-123"`) {
		t.Fatalf("access log lacks the request id: %s", e.logs.String())
	}
}
