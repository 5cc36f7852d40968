package api_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/api"
)

// TestIngestIdempotencyKey: POST /v1/ingest honours Idempotency-Key as commands do
// (API.md "Commands"): the same key and feed answer the first 202 again, the same
// job, without a second submission; the key with another feed, or while its first
// submission runs, is 409; another key, or another caller's, submits again.
func TestIngestIdempotencyKey(t *testing.T) {
	t.Parallel()
	fi := newFakeIngest()
	e := newEnv(t, withIdempotency(pgIdempotency(t)), withDeps(func(d *api.Deps) { d.Ingest = fi }))
	alice := e.token(t, "alice", api.RoleEditor)
	bob := e.token(t, "bob", api.RoleEditor)
	post := func(bearer, key, body string) response {
		h := map[string]string{"Content-Type": "application/x-ndjson"}
		if key != "" {
			h[api.HeaderIdempotencyKey] = key
		}
		return e.do(t, req{method: http.MethodPost, path: "/v1/ingest", body: body, headers: h, bearer: bearer})
	}
	other := ndjsonFeed + `{"external_id":"p2","title":"Other","category":"news","language":"en"}` + "\n"

	first := post(alice, "feed-1", ndjsonFeed)
	if first.status != http.StatusAccepted || first.header.Get(api.HeaderIdempotentReplayed) != "" {
		t.Fatalf("first: %d %v %s", first.status, first.header, first.body)
	}
	job := first.json(t)["job_id"]
	again := post(alice, "feed-1", ndjsonFeed)
	if again.status != http.StatusAccepted || again.json(t)["job_id"] != job || again.header.Get(api.HeaderIdempotentReplayed) != "true" ||
		again.header.Get("Location") != first.header.Get("Location") {
		t.Fatalf("retry: %d %v %s, first job %v", again.status, again.header, again.body, job)
	}
	if n := len(fi.submissions()); n != 1 {
		t.Fatalf("%d submissions after a retry, want 1", n)
	}
	if p := post(alice, "feed-1", other).problem(t, http.StatusConflict); p.Type != "urn:mediamesh:problem:idempotency-key-reused" {
		t.Fatalf("another feed with the key: %+v", p)
	}
	if r := post(alice, "feed-2", ndjsonFeed); r.status != http.StatusAccepted || r.json(t)["job_id"] == job {
		t.Fatalf("another key: %d %s", r.status, r.body)
	}
	if r := post(bob, "feed-1", ndjsonFeed); r.status != http.StatusAccepted || r.json(t)["job_id"] == job {
		t.Fatalf("another caller's key: %d %s", r.status, r.body)
	}
	if n := len(fi.submissions()); n != 3 {
		t.Fatalf("%d submissions, want 3", n)
	}

	// A submission that fails before its job releases the key: a retry runs again.
	fi.mu.Lock()
	fi.submit = func(context.Context, string, io.Reader) (string, error) { return "", io.ErrUnexpectedEOF }
	fi.mu.Unlock()
	post(alice, "feed-3", ndjsonFeed).problem(t, http.StatusBadRequest)

	// While a submission runs, its key is taken.
	started, release := make(chan struct{}), make(chan struct{})
	fi.mu.Lock()
	fi.submit = func(_ context.Context, _ string, body io.Reader) (string, error) {
		close(started)
		<-release
		_, err := io.Copy(io.Discard, body)
		return "0190f1f4-0000-7000-8000-00000000a003", err
	}
	fi.mu.Unlock()
	done := make(chan response, 1)
	go func() {
		r, err := e.try(req{method: http.MethodPost, path: "/v1/ingest", body: ndjsonFeed, bearer: alice,
			headers: map[string]string{"Content-Type": "application/x-ndjson", api.HeaderIdempotencyKey: "feed-3"}})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the submission did not start")
	}
	if p := post(alice, "feed-3", ndjsonFeed).problem(t, http.StatusConflict); p.Type != "urn:mediamesh:problem:idempotency-key-in-progress" {
		t.Fatalf("while running: %+v", p)
	}
	close(release)
	if r := <-done; r.status != http.StatusAccepted {
		t.Fatalf("the running submission: %d %s", r.status, r.body)
	}
	if r := post(alice, "feed-3", ndjsonFeed); r.status != http.StatusAccepted || r.json(t)["job_id"] != "0190f1f4-0000-7000-8000-00000000a003" {
		t.Fatalf("after it: %d %s", r.status, r.body)
	}
	if n := len(fi.submissions()); n != 5 {
		t.Fatalf("%d submissions, want 5", n)
	}
	if p := post(alice, "bad key\x01", ndjsonFeed); p.status != http.StatusBadRequest {
		t.Fatalf("invalid key: %d %s", p.status, p.body)
	}
}
