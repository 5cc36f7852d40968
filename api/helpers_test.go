package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/infra/telemetry"
)

const (
	testIssuer   = "mediamesh"
	testAudience = "mediamesh"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// recorder records every command and read the fake layer executes.
type recorder struct {
	mu    sync.Mutex
	calls []any
}

func (r *recorder) add(cmd any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, cmd)
}

func (r *recorder) all() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]any(nil), r.calls...)
}

func (r *recorder) count() int { return len(r.all()) }

// fake is one fake handler: it records the command and runs fn (or a default that
// answers like the real handler would for a fresh program).
type fake[C any] struct {
	rec *recorder
	fn  func(ctx context.Context, cmd C) (app.Result, error)
}

func (f *fake[C]) Handle(ctx context.Context, cmd C) (app.Result, error) {
	f.rec.add(cmd)
	return f.fn(ctx, cmd)
}

type fakeQuery[R any] struct {
	rec *recorder
	fn  func(ctx context.Context, id string) (R, error)
}

func (f *fakeQuery[R]) Handle(ctx context.Context, id string) (R, error) {
	f.rec.add(id)
	return f.fn(ctx, id)
}

// fakes is the fake command and read layer.
type fakes struct {
	rec              *recorder
	createProgram    *fake[app.CreateProgram]
	updateProgram    *fake[app.UpdateProgram]
	publishProgram   *fake[app.PublishProgram]
	unpublishProgram *fake[app.UnpublishProgram]
	archiveProgram   *fake[app.ArchiveProgram]
	addEpisode       *fake[app.AddEpisode]
	updateEpisode    *fake[app.UpdateEpisode]
	publishEpisode   *fake[app.PublishEpisode]
	unpublishEpisode *fake[app.UnpublishEpisode]
	archiveEpisode   *fake[app.ArchiveEpisode]
	programByID      *fakeQuery[app.ProgramView]
	episodeByID      *fakeQuery[app.EpisodeView]
	programHistory   *fakeQuery[[]app.HistoryEntry]
}

var (
	knownProgram = "0190f1f4-0000-7000-8000-000000000001"
	knownEpisode = "0190f1f4-0000-7000-8000-0000000000e1"
)

func programResult(id string, version int64) app.Result {
	return app.Result{ID: id, StreamID: "program-" + id, Version: version, Position: 1000 + version, Changed: true}
}

func episodeResult(id string, version int64) app.Result {
	r := programResult(knownProgram, version)
	r.ID, r.ProgramID = id, knownProgram
	return r
}

func newFakes() *fakes {
	rec := &recorder{}
	f := &fakes{rec: rec}
	f.createProgram = &fake[app.CreateProgram]{rec, func(context.Context, app.CreateProgram) (app.Result, error) {
		r := programResult(uuid.NewString(), 1)
		r.Created = true
		return r, nil
	}}
	f.updateProgram = &fake[app.UpdateProgram]{rec, func(_ context.Context, c app.UpdateProgram) (app.Result, error) {
		return programResult(c.ProgramID, 2), nil
	}}
	f.publishProgram = &fake[app.PublishProgram]{rec, func(_ context.Context, c app.PublishProgram) (app.Result, error) {
		return programResult(c.ProgramID, 3), nil
	}}
	f.unpublishProgram = &fake[app.UnpublishProgram]{rec, func(_ context.Context, c app.UnpublishProgram) (app.Result, error) {
		return programResult(c.ProgramID, 4), nil
	}}
	f.archiveProgram = &fake[app.ArchiveProgram]{rec, func(_ context.Context, c app.ArchiveProgram) (app.Result, error) {
		return programResult(c.ProgramID, 5), nil
	}}
	f.addEpisode = &fake[app.AddEpisode]{rec, func(_ context.Context, c app.AddEpisode) (app.Result, error) {
		r := episodeResult(uuid.NewString(), 2)
		r.ProgramID, r.StreamID, r.Created = c.ProgramID, "program-"+c.ProgramID, true
		return r, nil
	}}
	f.updateEpisode = &fake[app.UpdateEpisode]{rec, func(_ context.Context, c app.UpdateEpisode) (app.Result, error) {
		return episodeResult(c.EpisodeID, 3), nil
	}}
	f.publishEpisode = &fake[app.PublishEpisode]{rec, func(_ context.Context, c app.PublishEpisode) (app.Result, error) {
		return episodeResult(c.EpisodeID, 4), nil
	}}
	f.unpublishEpisode = &fake[app.UnpublishEpisode]{rec, func(_ context.Context, c app.UnpublishEpisode) (app.Result, error) {
		return episodeResult(c.EpisodeID, 5), nil
	}}
	f.archiveEpisode = &fake[app.ArchiveEpisode]{rec, func(_ context.Context, c app.ArchiveEpisode) (app.Result, error) {
		return episodeResult(c.EpisodeID, 6), nil
	}}
	f.programByID = &fakeQuery[app.ProgramView]{rec, func(_ context.Context, id string) (app.ProgramView, error) {
		if id != knownProgram {
			return app.ProgramView{}, fmt.Errorf("program %s: %w", id, app.ErrNotFound)
		}
		return app.ProgramView{ID: id, Title: "T", Tags: []string{}, Status: "draft", Version: 7,
			Episodes: []app.EpisodeSummary{}}, nil
	}}
	f.episodeByID = &fakeQuery[app.EpisodeView]{rec, func(_ context.Context, id string) (app.EpisodeView, error) {
		if id != knownEpisode {
			return app.EpisodeView{}, fmt.Errorf("episode %s: %w", id, app.ErrNotFound)
		}
		return app.EpisodeView{ID: id, ProgramID: knownProgram, Title: "E", Number: 1, Season: 1, Status: "draft", Version: 7}, nil
	}}
	f.programHistory = &fakeQuery[[]app.HistoryEntry]{rec, func(_ context.Context, id string) ([]app.HistoryEntry, error) {
		if id != knownProgram {
			return nil, fmt.Errorf("program %s: %w", id, app.ErrNotFound)
		}
		return []app.HistoryEntry{
			{Position: 1, Version: 1, Type: "mediamesh.program.created.v1", Actor: "u", Data: json.RawMessage(`{}`)},
			{Position: 2, Version: 2, Type: "mediamesh.program.published.v1", Actor: "u", Data: json.RawMessage(`{}`)},
		}, nil
	}}
	return f
}

func (f *fakes) commands() *api.Commands {
	return &api.Commands{
		CreateProgram: f.createProgram, UpdateProgram: f.updateProgram, PublishProgram: f.publishProgram,
		UnpublishProgram: f.unpublishProgram, ArchiveProgram: f.archiveProgram, AddEpisode: f.addEpisode,
		UpdateEpisode: f.updateEpisode, PublishEpisode: f.publishEpisode, UnpublishEpisode: f.unpublishEpisode,
		ArchiveEpisode: f.archiveEpisode,
	}
}

func (f *fakes) editorial() *api.Editorial {
	return &api.Editorial{ProgramByID: f.programByID, EpisodeByID: f.episodeByID, ProgramHistory: f.programHistory}
}

// untouchedStore is an IdempotencyStore for tests that send no Idempotency-Key:
// any call is a test failure.
type untouchedStore struct{ t *testing.T }

func (s untouchedStore) Claim(context.Context, string, string, []byte, time.Duration, time.Duration) (bool, []byte, []byte, error) {
	s.t.Error("idempotency store used")
	return false, nil, nil, errors.New("unexpected")
}

func (s untouchedStore) Complete(context.Context, string, string, []byte) error {
	s.t.Error("idempotency store used")
	return nil
}

func (s untouchedStore) Release(context.Context, string, string) error {
	s.t.Error("idempotency store used")
	return nil
}

// syncBuffer is a log destination safe for concurrent requests.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a server over fakes, with keys to mint tokens.
type env struct {
	app    *fiber.App
	fakes  *fakes
	key    ed25519.PrivateKey
	signer *jwtkeys.Signer
	tokens *api.ConsistencyTokens
	logs   *syncBuffer
}

type envOption func(*api.Config, *api.Deps)

func withIdempotency(s api.IdempotencyStore) envOption {
	return func(_ *api.Config, d *api.Deps) { d.Idempotency = s }
}

func withLister(l api.ProgramLister) envOption {
	return func(_ *api.Config, d *api.Deps) { d.Programs = l }
}

func withReadiness(checks ...api.ReadinessCheck) envOption {
	return func(_ *api.Config, d *api.Deps) { d.Readiness = checks }
}

func withConfig(f func(*api.Config)) envOption {
	return func(c *api.Config, _ *api.Deps) { f(c) }
}

func withDeps(f func(*api.Deps)) envOption {
	return func(_ *api.Config, d *api.Deps) { f(d) }
}

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jwtkeys.NewSigner(key, testIssuer, testAudience)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := jwtkeys.NewVerifier(testIssuer, testAudience, []ed25519.PublicKey{signer.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := api.NewConsistencyTokens(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakes()
	logs := &syncBuffer{}
	cfg := api.Config{ConsistencySecret: testSecret}
	deps := api.Deps{
		Commands:    f.commands(),
		Editorial:   f.editorial(),
		Tokens:      verifier,
		Idempotency: untouchedStore{t},
		Auth:        refusingAuth(),
		Keys:        verifier,
		RateLimiter: localLimiter(t),
		Assets:      testAssets(t),
		Discovery:   newFakeDiscovery(),
		Admin:       newFakeAdmin(),
		Ingest:      newFakeIngest(),
		Metrics:     telemetry.NewMetrics(),
		Logger:      slog.New(slog.NewJSONHandler(logs, nil)),
	}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	return &env{app: api.New(cfg, deps), fakes: f, key: key, signer: signer, tokens: tokens, logs: logs}
}

func (e *env) token(t *testing.T, subject, role string) string {
	t.Helper()
	tok, err := e.signer.Mint(subject, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// response is what a test looks at.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// problem checks that r is a well-formed problem+json with status and returns it.
func (r response) problem(t *testing.T, status int) api.Problem {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != api.ProblemContentType {
		t.Fatalf("content type %q, want %s; body %s", ct, api.ProblemContentType, r.body)
	}
	var p api.Problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if p.Status != status || !strings.HasPrefix(p.Type, "urn:mediamesh:problem:") || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem %+v", p)
	}
	if p.RequestID == "" || p.RequestID != r.header.Get(api.HeaderRequestID) {
		t.Fatalf("problem request_id %q, header %q", p.RequestID, r.header.Get(api.HeaderRequestID))
	}
	return p
}

// req describes one request.
type req struct {
	method, path string
	body         string
	headers      map[string]string
	bearer       string // a token; "" sends no Authorization unless headers has one
}

func jsonHeaders(extra ...string) map[string]string {
	h := map[string]string{"Content-Type": "application/json"}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

func (e *env) do(t *testing.T, r req) response {
	t.Helper()
	res, err := e.try(r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	return res
}

// try is do for goroutines other than the test's (which must not call t.Fatal).
func (e *env) try(r req) (response, error) {
	var body io.Reader = http.NoBody
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	if r.bearer != "" {
		hr.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	res, err := e.app.Test(hr, -1)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: res.StatusCode, header: res.Header, body: b}, nil
}

// pgIdempotency returns the real idempotency store on a fresh database.
func pgIdempotency(t *testing.T) *postgres.IdempotencyStore {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	return postgres.NewIdempotencyStore(pool)
}
