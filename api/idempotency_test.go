package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

const programBody = `{"title":"T","category":"news","language":"en"}`

func createWithKey(e *env, tok, key, body string) req {
	return req{method: http.MethodPost, path: "/v1/programs", bearer: tok, body: body,
		headers: jsonHeaders("Idempotency-Key", key)}
}

// sameResponse compares what a client acts on.
func sameResponse(t *testing.T, a, b response) {
	t.Helper()
	if a.status != b.status || !bytes.Equal(a.body, b.body) {
		t.Fatalf("responses differ:\n%d %s\n%d %s", a.status, a.body, b.status, b.body)
	}
	for _, h := range []string{"Location", "ETag", api.HeaderConsistencyToken, "Content-Type"} {
		if a.header.Get(h) != b.header.Get(h) {
			t.Fatalf("%s differs: %q vs %q", h, a.header.Get(h), b.header.Get(h))
		}
	}
}

func TestIdempotencyKeyReplaysTheFirstResponse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withIdempotency(pgIdempotency(t)))
	alice, bob := e.token(t, "alice", api.RoleEditor), e.token(t, "bob", api.RoleEditor)

	first := e.do(t, createWithKey(e, alice, "key-1", programBody))
	if first.status != http.StatusCreated || first.header.Get(api.HeaderIdempotentReplayed) != "" {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	again := e.do(t, createWithKey(e, alice, "key-1", programBody))
	sameResponse(t, first, again)
	if again.header.Get(api.HeaderIdempotentReplayed) != "true" {
		t.Fatal("replay not marked")
	}
	if n := e.fakes.rec.count(); n != 1 {
		t.Fatalf("executed %d times, want 1", n)
	}
	cmd := e.fakes.rec.all()[0].(app.CreateProgram)
	if cmd.Meta.IdempotencyKey == "" || cmd.Meta.IdempotencyKey == "key-1" {
		t.Fatalf("Meta.IdempotencyKey %q: want the scoped key", cmd.Meta.IdempotencyKey)
	}

	// Same key, different body: 409, nothing runs.
	p := e.do(t, createWithKey(e, alice, "key-1", `{"title":"Other","category":"news","language":"en"}`)).problem(t, http.StatusConflict)
	if p.Type != "urn:mediamesh:problem:idempotency-key-reused" {
		t.Fatalf("type %s", p.Type)
	}
	if n := e.fakes.rec.count(); n != 1 {
		t.Fatalf("a different body executed: %d", n)
	}

	// The key is scoped to the caller: bob's "key-1" is his own.
	if res := e.do(t, createWithKey(e, bob, "key-1", programBody)); res.status != http.StatusCreated || bytes.Equal(res.body, first.body) {
		t.Fatalf("bob: %d %s", res.status, res.body)
	}
	// …and to the route: the same key on another route is another key.
	pub := req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/publish", bearer: alice,
		headers: map[string]string{"Idempotency-Key": "key-1"}}
	if res := e.do(t, pub); res.status != http.StatusOK {
		t.Fatalf("other route: %d %s", res.status, res.body)
	}
	calls := e.fakes.rec.all()
	if len(calls) != 3 {
		t.Fatalf("executed %d, want 3", len(calls))
	}
	keys := map[string]bool{}
	for _, c := range calls {
		switch c := c.(type) {
		case app.CreateProgram:
			keys[c.Meta.IdempotencyKey] = true
		case app.PublishProgram:
			keys[c.Meta.IdempotencyKey] = true
		}
	}
	if len(keys) != 3 {
		t.Fatalf("scoped keys collide: %v", keys)
	}
}

// TestIdempotencyConcurrentRequests races requests with one key: exactly one
// executes; the others are told the key is in progress.
func TestIdempotencyConcurrentRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withIdempotency(pgIdempotency(t)))
	tok := e.token(t, "alice", api.RoleEditor)
	release := make(chan struct{})
	var executions atomic.Int32
	base := e.fakes.createProgram.fn
	e.fakes.createProgram.fn = func(ctx context.Context, c app.CreateProgram) (app.Result, error) {
		executions.Add(1)
		select { // hold the key until the others have been answered
		case <-release:
		case <-ctx.Done():
			return app.Result{}, ctx.Err()
		}
		return base(ctx, c)
	}
	const n = 6
	results := make(chan response, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res, err := e.try(createWithKey(e, tok, "race", programBody))
			if err != nil {
				res = response{status: -1, body: []byte(err.Error())}
			}
			results <- res
		})
	}
	var got []response
	timeout := time.After(20 * time.Second)
	for len(got) < n-1 {
		select {
		case r := <-results:
			got = append(got, r)
		case <-timeout:
			t.Fatalf("only %d of %d answered while one holds the key", len(got), n-1)
		}
	}
	close(release)
	wg.Wait()
	close(results)
	for r := range results {
		got = append(got, r)
	}
	created := 0
	for _, r := range got {
		switch r.status {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
			p := r.problem(t, http.StatusConflict)
			if p.Type != "urn:mediamesh:problem:idempotency-key-in-progress" || r.header.Get("Retry-After") == "" {
				t.Fatalf("in-progress problem %+v", p)
			}
		default:
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	}
	if created != 1 || executions.Load() != 1 {
		t.Fatalf("created %d, executed %d; want exactly one", created, executions.Load())
	}
	// Once done, the key replays.
	if res := e.do(t, createWithKey(e, tok, "race", programBody)); res.status != http.StatusCreated || res.header.Get(api.HeaderIdempotentReplayed) != "true" {
		t.Fatalf("after the race: %d %s", res.status, res.body)
	}
}

// TestIdempotencyOutcomes checks which outcomes are kept: client errors are replayed,
// transient failures (5xx, version conflicts, panics) release the key so a retry
// runs again.
func TestIdempotencyOutcomes(t *testing.T) {
	t.Parallel()
	store := pgIdempotency(t)
	tests := []struct {
		name        string
		first       func() (app.Result, error)
		firstStatus int
		executions  int // after a retry with the same key
	}{
		{"domain error is kept", func() (app.Result, error) {
			return app.Result{}, fmt.Errorf("archived: %w", program.ErrInvalidState)
		}, http.StatusUnprocessableEntity, 1},
		{"validation error is kept", func() (app.Result, error) {
			return app.Result{}, &program.ValidationError{Fields: []program.FieldError{{Field: "title", Message: "bad"}}}
		}, http.StatusBadRequest, 1},
		{"internal error is released", func() (app.Result, error) { return app.Result{}, errors.New("disk on fire") }, http.StatusInternalServerError, 2},
		{"version conflict is released", func() (app.Result, error) {
			return app.Result{}, fmt.Errorf("retries: %w", events.ErrVersionConflict)
		}, http.StatusConflict, 2},
		{"panic is released", func() (app.Result, error) { panic("boom") }, http.StatusInternalServerError, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withIdempotency(store))
			tok := e.token(t, uuid.NewString(), api.RoleEditor)
			var calls atomic.Int32
			e.fakes.publishProgram.fn = func(_ context.Context, c app.PublishProgram) (app.Result, error) {
				if calls.Add(1) == 1 {
					return tc.first()
				}
				return programResult(c.ProgramID, 3), nil
			}
			r := req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/publish", bearer: tok,
				headers: map[string]string{"Idempotency-Key": "k"}}
			first := e.do(t, r)
			first.problem(t, tc.firstStatus)
			second := e.do(t, r)
			if int(calls.Load()) != tc.executions {
				t.Fatalf("executed %d times, want %d", calls.Load(), tc.executions)
			}
			if tc.executions == 1 {
				sameResponse(t, first, second)
			} else if second.status != http.StatusOK {
				t.Fatalf("retry: %d %s", second.status, second.body)
			}
		})
	}
}

// failingStore is an idempotency store that is down.
type failingStore struct{}

func (failingStore) Claim(context.Context, string, string, []byte, time.Duration, time.Duration) (bool, []byte, []byte, error) {
	return false, nil, nil, errors.New("connection refused")
}
func (failingStore) Complete(context.Context, string, string, []byte) error { return nil }
func (failingStore) Release(context.Context, string, string) error          { return nil }

func TestIdempotencyStoreDownIs503AndRunsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withIdempotency(failingStore{}))
	res := e.do(t, createWithKey(e, e.token(t, "a", api.RoleEditor), "k", programBody))
	res.problem(t, http.StatusServiceUnavailable)
	if e.fakes.rec.count() != 0 {
		t.Fatal("executed without an idempotency claim")
	}
}
