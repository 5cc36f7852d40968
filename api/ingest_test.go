package api_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/ingest"
	bussql "github.com/mediamesh/mediamesh/infra/bus/sql"
	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// fakeIngestMax is the fake's feed limit: above the test server's body limit (the
// command limit, 1 MiB), so a test can show that the ingest route is not bound by it.
const fakeIngestMax = 4 << 20

// overBodyLimit is a size above the server's body limit for other routes.
const overBodyLimit = 3 << 19 // 1.5 MiB

// fakeIngest records submissions. Submit reads the whole body (as the real service
// does) unless submit is set, which then decides.
type fakeIngest struct {
	mu     sync.Mutex
	calls  []fakeSubmission
	submit func(ctx context.Context, ct string, body io.Reader) (string, error)
	jobs   map[string]ingest.Job
}

type fakeSubmission struct {
	contentType, actor string
	body               []byte
}

func newFakeIngest() *fakeIngest { return &fakeIngest{jobs: map[string]ingest.Job{}} }

func (f *fakeIngest) Submit(ctx context.Context, ct string, body io.Reader, actor string) (string, error) {
	f.mu.Lock()
	fn := f.submit
	f.mu.Unlock()
	if fn != nil {
		f.record(fakeSubmission{contentType: ct, actor: actor})
		return fn(ctx, ct, body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return "", err
	}
	f.record(fakeSubmission{contentType: ct, actor: actor, body: b})
	return uuid.NewString(), nil
}

func (f *fakeIngest) record(s fakeSubmission) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeIngest) submissions() []fakeSubmission {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeSubmission(nil), f.calls...)
}

func (f *fakeIngest) GetJob(_ context.Context, id string) (ingest.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return ingest.Job{}, fmt.Errorf("job %s: %w", id, ingest.ErrJobNotFound)
	}
	return j, nil
}

func (f *fakeIngest) MaxFeedBytes() int64 { return fakeIngestMax }

// ingestEnv is a server whose Deps.Ingest is a fresh fake.
func ingestEnv(t *testing.T) (*env, *fakeIngest) {
	t.Helper()
	fi := newFakeIngest()
	return newEnv(t, withDeps(func(d *api.Deps) { d.Ingest = fi })), fi
}

const ndjsonFeed = `{"external_id":"p1","title":"Show","category":"news","language":"en"}` + "\n"

// TestIngestSubmitResponses: the answers of POST /v1/ingest, one per outcome of
// the service, and the refusals made before the service is called.
func TestIngestSubmitResponses(t *testing.T) {
	t.Parallel()
	jobID := "0190f1f4-0000-7000-8000-00000000a001"
	tests := []struct {
		name     string
		headers  map[string]string
		bearer   string // role; "" no token
		body     string
		submit   func(ctx context.Context, ct string, body io.Reader) (string, error)
		status   int
		kind     string
		link     bool // the problem names the job in a Link header
		executed bool // the service was called
	}{
		{"no token", map[string]string{"Content-Type": "application/x-ndjson"}, "", ndjsonFeed, nil, 401, "unauthorized", false, false},
		{"viewer", map[string]string{"Content-Type": "application/x-ndjson"}, api.RoleViewer, ndjsonFeed, nil, 403, "forbidden", false, false},
		{"compressed", map[string]string{"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}, api.RoleEditor, ndjsonFeed, nil, 415, "unsupported-media-type", false, false},
		{"wrong content type", map[string]string{"Content-Type": "text/plain"}, api.RoleEditor, ndjsonFeed,
			func(context.Context, string, io.Reader) (string, error) {
				return "", fmt.Errorf("content type: %w", ingest.ErrUnsupportedContentType)
			}, 415, "unsupported-media-type", false, true},
		{"unreadable feed", map[string]string{"Content-Type": "text/csv"}, api.RoleEditor, "a,b\n",
			func(context.Context, string, io.Reader) (string, error) {
				return "", fmt.Errorf(`column "title" is missing: %w`, ingest.ErrInvalidFeed)
			}, 400, "bad-request", false, true},
		{"too large before a job", map[string]string{"Content-Type": "text/csv"}, api.RoleEditor, "x",
			func(context.Context, string, io.Reader) (string, error) { return "", ingest.ErrFeedTooLarge }, 413, "body-too-large", false, true},
		{"too large after the job", map[string]string{"Content-Type": "application/x-ndjson"}, api.RoleEditor, ndjsonFeed,
			func(context.Context, string, io.Reader) (string, error) { return jobID, ingest.ErrFeedTooLarge }, 413, "body-too-large", true, true},
		{"queue down", map[string]string{"Content-Type": "application/x-ndjson"}, api.RoleEditor, ndjsonFeed,
			func(context.Context, string, io.Reader) (string, error) {
				return jobID, errors.New("publish 3 items: connection refused")
			}, 503, "unavailable", true, true},
		{"job store down", map[string]string{"Content-Type": "application/x-ndjson"}, api.RoleEditor, ndjsonFeed,
			func(context.Context, string, io.Reader) (string, error) {
				return "", errors.New("record ingest job: refused")
			}, 503, "unavailable", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, fi := ingestEnv(t)
			fi.submit = tc.submit
			r := req{method: http.MethodPost, path: "/v1/ingest", body: tc.body, headers: tc.headers}
			if tc.bearer != "" {
				r.bearer = e.token(t, "alice", tc.bearer)
			}
			res := e.do(t, r)
			p := res.problem(t, tc.status)
			if got := strings.TrimPrefix(p.Type, "urn:mediamesh:problem:"); got != tc.kind {
				t.Fatalf("problem type %q, want %q (%s)", got, tc.kind, p.Detail)
			}
			link := res.header.Get("Link")
			if tc.link != (link == "</v1/ingest/"+jobID+`>; rel="related"`) || tc.link != strings.Contains(p.Detail, jobID) {
				t.Fatalf("Link %q, detail %q: want the job named: %v", link, p.Detail, tc.link)
			}
			if got := len(fi.submissions()) > 0; got != tc.executed {
				t.Fatalf("service called: %v, want %v", got, tc.executed)
			}
			if strings.Contains(strings.ToLower(p.Detail), "connection refused") {
				t.Fatalf("detail leaks the cause: %q", p.Detail)
			}
		})
	}
}

// TestIngestSubmitAccepted: a feed is handed to the service as it came, with the
// caller as the actor, and answered 202 with the job's id and Location, without a
// consistency token (nothing is written yet). A feed larger than the server's body
// limit for other routes passes: only the feed limit applies.
func TestIngestSubmitAccepted(t *testing.T) {
	t.Parallel()
	e, fi := ingestEnv(t)
	big := strings.Repeat(ndjsonFeed, overBodyLimit/len(ndjsonFeed))
	for _, body := range []string{ndjsonFeed, big} {
		res := e.do(t, req{method: http.MethodPost, path: "/v1/ingest", body: body,
			headers: map[string]string{"Content-Type": "application/x-ndjson; charset=utf-8"}, bearer: e.token(t, "alice", api.RoleEditor)})
		if res.status != http.StatusAccepted {
			t.Fatalf("status %d: %s", res.status, res.body)
		}
		id, _ := res.json(t)["job_id"].(string)
		if _, err := uuid.Parse(id); err != nil || res.header.Get("Location") != "/v1/ingest/"+id {
			t.Fatalf("job_id %q, Location %q", id, res.header.Get("Location"))
		}
		if res.header.Get(api.HeaderConsistencyToken) != "" {
			t.Fatal("an ingest answer carries a consistency token")
		}
		subs := fi.submissions()
		last := subs[len(subs)-1]
		if string(last.body) != body || last.actor != "alice" || last.contentType != "application/x-ndjson; charset=utf-8" {
			t.Fatalf("service got %d bytes (want %d), actor %q, type %q", len(last.body), len(body), last.actor, last.contentType)
		}
	}

	// A declared length above the feed limit is refused before the service runs.
	res := e.do(t, req{method: http.MethodPost, path: "/v1/ingest", body: strings.Repeat("x", fakeIngestMax+1),
		headers: map[string]string{"Content-Type": "application/x-ndjson"}, bearer: e.token(t, "alice", api.RoleEditor)})
	res.problem(t, http.StatusRequestEntityTooLarge)
	if n := len(fi.submissions()); n != 2 {
		t.Fatalf("%d submissions, want 2", n)
	}
}

// TestIngestJob: GET /v1/ingest/{job_id} shows API.md's fields; unknown ids are 404.
func TestIngestJob(t *testing.T) {
	t.Parallel()
	e, fi := ingestEnv(t)
	id := "0190f1f4-0000-7000-8000-00000000b001"
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fi.jobs[id] = ingest.Job{ID: id, Status: ingest.StatusCompletedWithErrors, Total: 3, Succeeded: 2, Failed: 1,
		Errors: []ingest.ItemError{{Line: 2, ExternalID: "p2", Message: "title: must not be empty"}}, CreatedAt: at, UpdatedAt: at}
	editor := e.token(t, "alice", api.RoleEditor)

	res := e.do(t, req{method: http.MethodGet, path: "/v1/ingest/" + id, bearer: editor})
	if res.status != http.StatusOK || res.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, Cache-Control %q: %s", res.status, res.header.Get("Cache-Control"), res.body)
	}
	body := res.json(t)
	for _, k := range []string{"job_id", "status", "total", "succeeded", "failed", "errors", "created_at", "updated_at"} {
		if _, ok := body[k]; !ok {
			t.Fatalf("job %v has no %q", body, k)
		}
	}
	if body["job_id"] != id || body["status"] != "completed_with_errors" || body["total"] != 3.0 || body["succeeded"] != 2.0 || body["failed"] != 1.0 {
		t.Fatalf("job %v", body)
	}
	errs := body["errors"].([]any)
	if len(errs) != 1 {
		t.Fatalf("errors %v", errs)
	}
	hasKeys(t, "job error", errs[0].(map[string]any), "line", "external_id", "message")

	tests := []struct {
		name, path, role string
		status           int
	}{
		{"unknown job", "/v1/ingest/0190f1f4-0000-7000-8000-00000000b002", api.RoleEditor, 404},
		{"viewer", "/v1/ingest/" + id, api.RoleViewer, 403},
	}
	for _, tc := range tests {
		res := e.do(t, req{method: http.MethodGet, path: tc.path, bearer: e.token(t, "bob", tc.role)})
		res.problem(t, tc.status)
	}
	e.do(t, req{method: http.MethodGet, path: "/v1/ingest/" + id}).problem(t, http.StatusUnauthorized)
}

// TestIngestStreamsTheBody: over TCP, the service reads the first item while the
// client is still sending the rest, so a feed is never held in memory whole.
func TestIngestStreamsTheBody(t *testing.T) {
	t.Parallel()
	e, fi := ingestEnv(t)
	firstRead := make(chan string, 1)
	fi.submit = func(_ context.Context, _ string, body io.Reader) (string, error) {
		br := bufio.NewReader(body)
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		firstRead <- line
		if _, err := io.Copy(io.Discard, br); err != nil {
			return "", err
		}
		return uuid.NewString(), nil
	}
	base := listen(t, e)
	pr, pw := io.Pipe()
	r, err := http.NewRequest(http.MethodPost, base+"/v1/ingest", pr) // chunked: no length
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-ndjson")
	r.Header.Set("Authorization", "Bearer "+e.token(t, "alice", api.RoleEditor))
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		res, err := (&http.Client{Timeout: 30 * time.Second}).Do(r)
		if err != nil {
			done <- result{err: err}
			return
		}
		_ = res.Body.Close()
		done <- result{status: res.StatusCode}
	}()
	if _, err := io.WriteString(pw, ndjsonFeed); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-firstRead:
		if line != ndjsonFeed {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the service saw nothing of the body before it ended: the body is not streamed")
	}
	// The rest, more than the body limit of the other routes.
	if _, err := io.WriteString(pw, strings.Repeat(ndjsonFeed, overBodyLimit/len(ndjsonFeed))); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
	if res := <-done; res.err != nil || res.status != http.StatusAccepted {
		t.Fatalf("response %d, %v", res.status, res.err)
	}
}

// TestStreamingKeepsOtherRoutesBounded: with streaming turned on for ingest, the
// other routes still refuse large bodies (declared or chunked) with 413, and an
// ingest body left unread (the request refused before reading it) is never parsed
// as a next request on the same connection.
func TestStreamingKeepsOtherRoutesBounded(t *testing.T) {
	t.Parallel()
	e, fi := ingestEnv(t)
	base := listen(t, e)
	editor := e.token(t, "alice", api.RoleEditor)

	// Chunked, growing past the body limit: refused once it passes it.
	chunk := strings.Repeat("a", 32<<10)
	var chunked strings.Builder
	for range 2 * overBodyLimit / len(chunk) {
		fmt.Fprintf(&chunked, "%x\r\n%s\r\n", len(chunk), chunk)
	}
	chunked.WriteString("0\r\n\r\n")
	res := raw(t, base, "POST /v1/programs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+editor+
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked.String())
	res.problem(t, http.StatusRequestEntityTooLarge)
	if n := e.fakes.rec.count(); n != 0 {
		t.Fatalf("%d commands executed", n)
	}

	// A command body within the command limit but declared as 2 MB: 413 at once
	// (TestRealListener covers it too; here it is sure to run with streaming on).
	raw(t, base, "POST /v1/programs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+editor+
		"\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n").problem(t, http.StatusRequestEntityTooLarge)

	// Smuggling: refused requests whose bodies end with a request, past the 8 KiB
	// that fasthttp reads ahead, must not see that request served.
	smuggled := strings.Repeat("x", 8<<10) + "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, path := range []string{"/v1/ingest", "/v1/programs"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: %d\r\n\r\n%s", path, len(smuggled), smuggled)
		br := bufio.NewReader(conn)
		hr, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, hr.Body)
		_ = hr.Body.Close()
		if hr.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: status %d, want 401", path, hr.StatusCode)
		}
		// The next response on this connection, if any, must be the next request's.
		_, _ = fmt.Fprint(conn, "GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if next, err := http.ReadResponse(br, nil); err == nil {
			b, _ := io.ReadAll(next.Body)
			_ = next.Body.Close()
			if !bytes.Contains(b, []byte(`"openapi"`)) {
				t.Fatalf("%s: the unread body was served as a request: %d %.100s", path, next.StatusCode, b)
			}
		}
		_ = conn.Close()
	}
	if n := len(fi.submissions()); n != 0 {
		t.Fatalf("%d submissions", n)
	}

	// And a keep-alive connection goes on normally after a command and after a
	// fully read feed.
	client := &http.Client{Timeout: 10 * time.Second}
	for i, r := range []struct{ path, ct, body string }{
		{"/v1/programs", "application/json", `{"title":"T","category":"news","language":"en"}`},
		{"/v1/ingest", "application/x-ndjson", ndjsonFeed},
		{"/v1/programs", "application/json", `{"title":"T","category":"news","language":"en"}`},
	} {
		hr, err := http.NewRequest(http.MethodPost, base+r.path, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Content-Type", r.ct)
		hr.Header.Set("Authorization", "Bearer "+editor)
		res, err := client.Do(hr)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		if res.StatusCode >= 300 {
			t.Fatalf("request %d: %d %s", i, res.StatusCode, b)
		}
	}
}

// TestIngestWithTheRealService: the route over the real service, job store and
// queue: a feed with a bad item is accepted, and its job reports both items.
func TestIngestWithTheRealService(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	pub, err := bussql.NewPublisher(pool, bussql.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	svc, err := ingest.NewService(postgres.NewIngestJobs(pool), pub, ingest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withDeps(func(d *api.Deps) { d.Ingest = svc }))
	editor := e.token(t, "alice", api.RoleEditor)
	feed := ndjsonFeed + `{"external_id":"p2","title":"A\u0000B","category":"news","language":"en"}` + "\n"
	res := e.do(t, req{method: http.MethodPost, path: "/v1/ingest", body: feed,
		headers: map[string]string{"Content-Type": "application/x-ndjson"}, bearer: editor})
	if res.status != http.StatusAccepted {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	job := e.do(t, req{method: http.MethodGet, path: res.header.Get("Location"), bearer: editor})
	if job.status != http.StatusOK {
		t.Fatalf("job: %d %s", job.status, job.body)
	}
	body := job.json(t)
	errs, _ := body["errors"].([]any)
	if body["total"] != 2.0 || body["failed"] != 1.0 || body["status"] != "queued" || len(errs) != 1 ||
		!strings.Contains(errs[0].(map[string]any)["message"].(string), "control characters") {
		t.Fatalf("job %s", bytes.TrimSpace(job.body))
	}
	e.do(t, req{method: http.MethodGet, path: "/v1/ingest/not-a-uuid", bearer: editor}).problem(t, http.StatusNotFound)
}
