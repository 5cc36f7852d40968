package app

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testClock ticks one second per reading.
type testClock struct {
	mu sync.Mutex
	n  int
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return t0.Add(time.Duration(c.n-1) * time.Second).In(time.FixedZone("X", 3600))
}

type fixture struct {
	store *memStore
	h     Handlers
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	s := newMemStore()
	clock := &testClock{}
	return fixture{store: s, h: NewHandlers(s, WithClock(clock.now))}
}

func ptr[T any](v T) *T { return &v }

var ctx = context.Background()

func meta() Meta { return Meta{Actor: "editor-1"} }

func validCreate() CreateProgram {
	return CreateProgram{Meta: meta(), Title: "Show", Category: "news", Language: "en", Tags: []string{"a"}}
}

func (f fixture) create(t *testing.T) Result {
	t.Helper()
	res, err := f.h.CreateProgram.Handle(ctx, validCreate())
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return res
}

func (f fixture) addEpisode(t *testing.T, programID string, number, season int) Result {
	t.Helper()
	res, err := f.h.AddEpisode.Handle(ctx, AddEpisode{Meta: meta(), ProgramID: programID, Title: "Ep", Number: number, Season: season, DurationSeconds: 60})
	if err != nil {
		t.Fatalf("add episode: %v", err)
	}
	return res
}

func TestCreateProgram(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cmd := validCreate()
	cmd.Meta = Meta{Actor: "ed", CorrelationID: "corr", CausationID: "cause", TraceParent: "00-abc-def-01", TraceState: "k=v"}
	res, err := f.h.CreateProgram.Handle(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	id, err := uuid.Parse(res.ID)
	if err != nil || id.Version() != 7 {
		t.Fatalf("id %q is not a UUIDv7: %v", res.ID, err)
	}
	want := Result{ID: res.ID, StreamID: "program-" + res.ID, Version: 1, Position: 10, Changed: true, Created: true}
	if res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}
	envs := f.store.stream(res.StreamID)
	if len(envs) != 1 {
		t.Fatalf("stream has %d events", len(envs))
	}
	env := envs[0]
	wantMeta := events.Metadata{Actor: "ed", CorrelationID: "corr", CausationID: "cause", TraceParent: "00-abc-def-01", TraceState: "k=v"}
	if env.Type != events.TypeProgramCreated || env.Metadata != wantMeta || !env.OccurredAt.Equal(t0) || env.OccurredAt.Location() != time.UTC {
		t.Fatalf("envelope = %+v", env)
	}
	if eid, err := uuid.Parse(env.EventID); err != nil || eid.Version() != 7 {
		t.Fatalf("event id %q without idempotency key must be a UUIDv7", env.EventID)
	}
}

func TestCreateProgramInvalid(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, err := f.h.CreateProgram.Handle(ctx, CreateProgram{Title: "", Category: "X", Language: "en"})
	var ve *program.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 2 {
		t.Fatalf("err = %v, want a ValidationError with title and category", err)
	}
	if f.store.streamCount() != 0 {
		t.Fatal("invalid command wrote a stream")
	}
	if _, err := f.h.CreateProgram.Handle(ctx, CreateProgram{Meta: Meta{ExpectedVersion: ptr(int64(3))}, Title: "T", Category: "c", Language: "en"}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("If-Match on create: %v", err)
	}
}

func TestCreateProgramIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cmd := validCreate()
	cmd.Meta.IdempotencyKey = "user-1|POST /v1/programs|key-1"
	first, err := f.h.CreateProgram.Handle(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.h.CreateProgram.Handle(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if second != first {
		t.Fatalf("retry = %+v, want the original %+v", second, first)
	}
	if f.store.streamCount() != 1 || f.store.writeCount() != 1 {
		t.Fatalf("retry appended: %d streams, %d writes", f.store.streamCount(), f.store.writeCount())
	}
	// Another key creates another program.
	cmd.Meta.IdempotencyKey = "user-1|POST /v1/programs|key-2"
	third, err := f.h.CreateProgram.Handle(ctx, cmd)
	if err != nil || third.ID == first.ID {
		t.Fatalf("other key: %+v %v", third, err)
	}
}

func TestUpdateProgram(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	res, err := f.h.UpdateProgram.Handle(ctx, UpdateProgram{Meta: meta(), ProgramID: c.ID, Title: ptr("New"), Tags: ptr([]string{"a"})})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Result{ID: c.ID, StreamID: c.StreamID, Version: 2, Position: 20, Changed: true}); res != want {
		t.Fatalf("result = %+v, want %+v", res, want)
	}
	var up events.ProgramUpdated
	if err := json.Unmarshal(f.store.stream(c.StreamID)[1].Data, &up); err != nil {
		t.Fatal(err)
	}
	if up.Title == nil || *up.Title != "New" || up.Tags != nil || up.Category != nil {
		t.Fatalf("ProgramUpdated must hold only the changed title: %+v", up)
	}
	// The same values again: nothing is appended, the current version is reported.
	res, err = f.h.UpdateProgram.Handle(ctx, UpdateProgram{Meta: meta(), ProgramID: c.ID, Title: ptr("New"), Language: ptr("EN")})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Result{ID: c.ID, StreamID: c.StreamID, Version: 2, Position: 20}); res != want {
		t.Fatalf("no-op result = %+v, want %+v", res, want)
	}
	if f.store.writeCount() != 2 {
		t.Fatalf("writes = %d, want 2", f.store.writeCount())
	}
	_, err = f.h.UpdateProgram.Handle(ctx, UpdateProgram{Meta: meta(), ProgramID: c.ID, Title: ptr(""), Category: ptr("A B")})
	var ve *program.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 2 {
		t.Fatalf("invalid update: %v", err)
	}
}

func TestPublishFlow(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	steps := []struct {
		name        string
		run         func() (Result, error)
		wantVersion int64
		wantChanged bool
		wantErr     error
	}{
		{"unpublish draft", f.cmd(f.h.UnpublishProgram.Handle, c.ID), 0, false, program.ErrInvalidState},
		{"publish", f.cmd(f.h.PublishProgram.Handle, c.ID), 2, true, nil},
		{"publish again", f.cmd(f.h.PublishProgram.Handle, c.ID), 2, false, nil},
		{"unpublish", f.cmd(f.h.UnpublishProgram.Handle, c.ID), 3, true, nil},
		{"unpublish again", f.cmd(f.h.UnpublishProgram.Handle, c.ID), 3, false, nil},
		{"republish", f.cmd(f.h.PublishProgram.Handle, c.ID), 4, true, nil},
		{"archive", f.cmd(f.h.ArchiveProgram.Handle, c.ID), 5, true, nil},
		{"archive again", f.cmd(f.h.ArchiveProgram.Handle, c.ID), 5, false, nil},
		{"publish archived", f.cmd(f.h.PublishProgram.Handle, c.ID), 0, false, program.ErrInvalidState},
		{"update archived", func() (Result, error) {
			return f.h.UpdateProgram.Handle(ctx, UpdateProgram{ProgramID: c.ID, Title: ptr("x")})
		}, 0, false, program.ErrInvalidState},
		{"add episode to archived", func() (Result, error) {
			return f.h.AddEpisode.Handle(ctx, AddEpisode{ProgramID: c.ID, Title: "x", Number: 1, DurationSeconds: 1})
		}, 0, false, program.ErrInvalidState},
		{"unknown program", f.cmd(f.h.PublishProgram.Handle, uuid.NewString()), 0, false, ErrNotFound},
		{"malformed id", f.cmd(f.h.ArchiveProgram.Handle, "not-a-uuid"), 0, false, ErrNotFound},
	}
	for _, s := range steps {
		res, err := s.run()
		if s.wantErr != nil {
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("%s: err = %v, want %v", s.name, err, s.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if res.ID != c.ID || res.Version != s.wantVersion || res.Changed != s.wantChanged || res.Created {
			t.Fatalf("%s: result %+v, want version %d changed %v", s.name, res, s.wantVersion, s.wantChanged)
		}
		if last := f.store.stream(c.StreamID); res.Position != last[len(last)-1].Position {
			t.Fatalf("%s: position %d, want the last event's %d", s.name, res.Position, last[len(last)-1].Position)
		}
	}
	if n := len(f.store.stream(c.StreamID)); n != 5 {
		t.Fatalf("stream has %d events, want 5", n)
	}
}

// cmd adapts the program state commands (same shape) for the flow table.
func (f fixture) cmd(handle any, id string) func() (Result, error) {
	return func() (Result, error) {
		switch h := handle.(type) {
		case func(context.Context, PublishProgram) (Result, error):
			return h(ctx, PublishProgram{Meta: meta(), ProgramID: id})
		case func(context.Context, UnpublishProgram) (Result, error):
			return h(ctx, UnpublishProgram{Meta: meta(), ProgramID: id})
		case func(context.Context, ArchiveProgram) (Result, error):
			return h(ctx, ArchiveProgram{Meta: meta(), ProgramID: id})
		}
		panic("unknown handler")
	}
}

func TestIfMatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	_, err := f.h.PublishProgram.Handle(ctx, PublishProgram{Meta: Meta{ExpectedVersion: ptr(int64(2))}, ProgramID: c.ID})
	if !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("stale If-Match: %v", err)
	}
	res, err := f.h.PublishProgram.Handle(ctx, PublishProgram{Meta: Meta{ExpectedVersion: ptr(int64(1))}, ProgramID: c.ID})
	if err != nil || res.Version != 2 {
		t.Fatalf("matching If-Match: %+v %v", res, err)
	}
	// A conflict on append with an If-Match is a failed precondition, not retried.
	f.store.set(func(s *memStore) { s.conflicts = 1 })
	_, err = f.h.UnpublishProgram.Handle(ctx, UnpublishProgram{Meta: Meta{ExpectedVersion: ptr(int64(2))}, ProgramID: c.ID})
	if !errors.Is(err, ErrPreconditionFailed) || errors.Is(err, events.ErrVersionConflict) {
		t.Fatalf("conflict with If-Match: %v", err)
	}
	// Episode commands compare If-Match with the program stream's version.
	ep := f.addEpisode(t, c.ID, 1, 1)
	if _, err := f.h.PublishEpisode.Handle(ctx, PublishEpisode{Meta: Meta{ExpectedVersion: ptr(int64(2))}, EpisodeID: ep.ID}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("stale episode If-Match: %v", err)
	}
	if res, err := f.h.PublishEpisode.Handle(ctx, PublishEpisode{Meta: Meta{ExpectedVersion: ptr(ep.Version)}, EpisodeID: ep.ID}); err != nil || res.Version != ep.Version+1 {
		t.Fatalf("episode If-Match: %+v %v", res, err)
	}
}

func TestRetryOnConflict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		conflicts int
		wantErr   error
	}{
		{conflicts: 1},
		{conflicts: maxRetries},
		{conflicts: maxRetries + 1, wantErr: events.ErrVersionConflict},
	}
	for _, tc := range tests {
		f := newFixture(t)
		c := f.create(t)
		f.store.set(func(s *memStore) { s.conflicts, s.appendCalls = tc.conflicts, 0 })
		res, err := f.h.UpdateProgram.Handle(ctx, UpdateProgram{Meta: meta(), ProgramID: c.ID, Title: ptr("T2")})
		calls := 0
		f.store.set(func(s *memStore) { calls = s.appendCalls })
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) || calls != maxRetries+1 {
				t.Fatalf("%d conflicts: err %v after %d appends, want %v after %d", tc.conflicts, err, calls, tc.wantErr, maxRetries+1)
			}
			continue
		}
		if err != nil || res.Version != 2 || calls != tc.conflicts+1 {
			t.Fatalf("%d conflicts: %+v %v after %d appends", tc.conflicts, res, err, calls)
		}
	}
}

// TestRetryDecidesAgain slips a real concurrent write in before the first append:
// the retry must decide against the new state, not re-send the old decision.
func TestRetryDecidesAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	var fired atomic.Bool
	f.store.set(func(s *memStore) {
		s.beforeAppend = func(string) {
			if fired.CompareAndSwap(false, true) {
				if _, err := f.h.ArchiveProgram.Handle(ctx, ArchiveProgram{ProgramID: c.ID}); err != nil {
					t.Errorf("concurrent archive: %v", err)
				}
			}
		}
	})
	_, err := f.h.PublishProgram.Handle(ctx, PublishProgram{Meta: meta(), ProgramID: c.ID})
	if !errors.Is(err, program.ErrInvalidState) {
		t.Fatalf("publish raced by archive: %v, want ErrInvalidState", err)
	}
	if n := len(f.store.stream(c.StreamID)); n != 2 {
		t.Fatalf("stream has %d events, want created+archived", n)
	}
}

func TestIdempotencyKeyOnChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	m := Meta{Actor: "ed", IdempotencyKey: "ed|POST /v1/programs/x/publish|k"}
	first, err := f.h.PublishProgram.Handle(ctx, PublishProgram{Meta: m, ProgramID: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	// The stream moves on; the retried command still answers as the first time.
	if _, err := f.h.UnpublishProgram.Handle(ctx, UnpublishProgram{Meta: meta(), ProgramID: c.ID}); err != nil {
		t.Fatal(err)
	}
	writes := f.store.writeCount()
	again, err := f.h.PublishProgram.Handle(ctx, PublishProgram{Meta: m, ProgramID: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	if again != first || f.store.writeCount() != writes {
		t.Fatalf("retry = %+v (writes %d→%d), want the original %+v and no write", again, writes, f.store.writeCount(), first)
	}
	envs := f.store.stream(c.StreamID)
	if envs[1].EventID != uuid.NewSHA1(idempotencyNamespace, []byte(m.IdempotencyKey+"/0")).String() {
		t.Fatalf("event id %s is not derived from the key", envs[1].EventID)
	}
	// Even with an If-Match that was right the first time.
	again, err = f.h.PublishProgram.Handle(ctx, PublishProgram{Meta: Meta{IdempotencyKey: m.IdempotencyKey, ExpectedVersion: ptr(int64(1))}, ProgramID: c.ID})
	if err != nil || again != first {
		t.Fatalf("retry with the original If-Match: %+v %v", again, err)
	}
}

func TestAddEpisode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	ep := f.addEpisode(t, c.ID, 1, 0)
	if id, err := uuid.Parse(ep.ID); err != nil || id.Version() != 7 {
		t.Fatalf("episode id %q", ep.ID)
	}
	if want := (Result{ID: ep.ID, ProgramID: c.ID, StreamID: c.StreamID, Version: 2, Position: ep.Position, Changed: true, Created: true}); ep != want {
		t.Fatalf("result = %+v, want %+v", ep, want)
	}
	ptrStream := f.store.stream(events.EpisodeStreamID(ep.ID))
	if len(ptrStream) != 1 || ptrStream[0].Type != events.TypeEpisodeRegistered {
		t.Fatalf("pointer stream = %+v", ptrStream)
	}
	var reg events.EpisodeRegistered
	if err := json.Unmarshal(ptrStream[0].Data, &reg); err != nil || reg != (events.EpisodeRegistered{EpisodeID: ep.ID, ProgramID: c.ID}) {
		t.Fatalf("pointer = %+v %v", reg, err)
	}
	if ptrStream[0].Position >= ep.Position {
		t.Fatal("the pointer must be written before the episode")
	}

	// Nothing is written, not even a pointer, when the add is refused up front.
	refused := []struct {
		name    string
		cmd     AddEpisode
		wantErr error
	}{
		{"duplicate number", AddEpisode{ProgramID: c.ID, Title: "x", Number: 1, Season: 1, DurationSeconds: 1}, program.ErrDuplicateEpisodeNumber},
		{"unknown program", AddEpisode{ProgramID: uuid.NewString(), Title: "x", Number: 1, DurationSeconds: 1}, ErrNotFound},
		{"stale If-Match", AddEpisode{Meta: Meta{ExpectedVersion: ptr(int64(1))}, ProgramID: c.ID, Title: "x", Number: 2, DurationSeconds: 1}, ErrPreconditionFailed},
	}
	for _, r := range refused {
		streams := f.store.streamCount()
		if _, err := f.h.AddEpisode.Handle(ctx, r.cmd); !errors.Is(err, r.wantErr) {
			t.Fatalf("%s: err = %v, want %v", r.name, err, r.wantErr)
		}
		if f.store.streamCount() != streams {
			t.Fatalf("%s: a refused add wrote a stream", r.name)
		}
	}
	_, err := f.h.AddEpisode.Handle(ctx, AddEpisode{ProgramID: c.ID, Number: 0, Season: -2, DurationSeconds: 0})
	var ve *program.ValidationError
	if !errors.As(err, &ve) || len(ve.Fields) != 4 {
		t.Fatalf("invalid episode: %v", err)
	}
	// Same number in another season is fine.
	if other := f.addEpisode(t, c.ID, 1, 2); other.Version != 3 {
		t.Fatalf("season 2: %+v", other)
	}
}

func TestAddEpisodeIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	cmd := AddEpisode{Meta: Meta{IdempotencyKey: "ed|POST episodes|k1"}, ProgramID: c.ID, Title: "E", Number: 1, DurationSeconds: 10}
	first, err := f.h.AddEpisode.Handle(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	streams, writes := f.store.streamCount(), f.store.writeCount()
	again, err := f.h.AddEpisode.Handle(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if again != first || f.store.streamCount() != streams || f.store.writeCount() != writes {
		t.Fatalf("retry = %+v, want %+v with nothing written", again, first)
	}
}

// TestAddEpisodeRetryAfterPartialWrite: the first run wrote the pointer and failed
// before the episode; the retry adds the episode under the id of that pointer.
func TestAddEpisodeRetryAfterPartialWrite(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	f.store.set(func(s *memStore) { s.failStream = c.StreamID })
	cmd := AddEpisode{Meta: Meta{IdempotencyKey: "ed|POST episodes|k2"}, ProgramID: c.ID, Title: "E", Number: 1, DurationSeconds: 10}
	if _, err := f.h.AddEpisode.Handle(ctx, cmd); !errors.Is(err, errBroken) {
		t.Fatalf("first run: %v", err)
	}
	var pointer string
	f.store.set(func(s *memStore) {
		for id := range s.streams {
			if strings.HasPrefix(id, "episode-") {
				pointer = id
			}
		}
	})
	if pointer == "" {
		t.Fatal("the first run wrote no pointer")
	}
	// The orphan pointer resolves to nothing yet.
	orphan := strings.TrimPrefix(pointer, "episode-")
	if _, err := f.h.EpisodeByID.Handle(ctx, orphan); !errors.Is(err, ErrNotFound) {
		t.Fatalf("orphan pointer: %v", err)
	}
	res, err := f.h.AddEpisode.Handle(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != orphan || f.store.streamCount() != 2 {
		t.Fatalf("retry added %s (streams %d), want the pointer's episode %s", res.ID, f.store.streamCount(), orphan)
	}
	if v, err := f.h.EpisodeByID.Handle(ctx, orphan); err != nil || v.ProgramID != c.ID {
		t.Fatalf("episode after retry: %+v %v", v, err)
	}
}

func TestEpisodeCommands(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	ep := f.addEpisode(t, c.ID, 1, 1)
	f.addEpisode(t, c.ID, 2, 1)

	res, err := f.h.UpdateEpisode.Handle(ctx, UpdateEpisode{Meta: meta(), EpisodeID: ep.ID, Title: ptr("Renamed"), Number: ptr(1)})
	if err != nil || res.ID != ep.ID || res.ProgramID != c.ID || res.Version != 4 || !res.Changed {
		t.Fatalf("update episode: %+v %v", res, err)
	}
	if res, err := f.h.UpdateEpisode.Handle(ctx, UpdateEpisode{EpisodeID: ep.ID, Title: ptr("Renamed")}); err != nil || res.Changed || res.Version != 4 {
		t.Fatalf("no-op update episode: %+v %v", res, err)
	}
	if _, err := f.h.UpdateEpisode.Handle(ctx, UpdateEpisode{EpisodeID: ep.ID, Number: ptr(2)}); !errors.Is(err, program.ErrDuplicateEpisodeNumber) {
		t.Fatalf("taken number: %v", err)
	}
	steps := []struct {
		name    string
		run     func() (Result, error)
		changed bool
		wantErr error
	}{
		{"unpublish draft", func() (Result, error) { return f.h.UnpublishEpisode.Handle(ctx, UnpublishEpisode{EpisodeID: ep.ID}) }, false, program.ErrInvalidState},
		{"publish", func() (Result, error) { return f.h.PublishEpisode.Handle(ctx, PublishEpisode{EpisodeID: ep.ID}) }, true, nil},
		{"publish again", func() (Result, error) { return f.h.PublishEpisode.Handle(ctx, PublishEpisode{EpisodeID: ep.ID}) }, false, nil},
		{"unpublish", func() (Result, error) { return f.h.UnpublishEpisode.Handle(ctx, UnpublishEpisode{EpisodeID: ep.ID}) }, true, nil},
		{"archive", func() (Result, error) { return f.h.ArchiveEpisode.Handle(ctx, ArchiveEpisode{EpisodeID: ep.ID}) }, true, nil},
		{"archive again", func() (Result, error) { return f.h.ArchiveEpisode.Handle(ctx, ArchiveEpisode{EpisodeID: ep.ID}) }, false, nil},
		{"publish archived", func() (Result, error) { return f.h.PublishEpisode.Handle(ctx, PublishEpisode{EpisodeID: ep.ID}) }, false, program.ErrInvalidState},
		{"update archived", func() (Result, error) {
			return f.h.UpdateEpisode.Handle(ctx, UpdateEpisode{EpisodeID: ep.ID, Title: ptr("x")})
		}, false, program.ErrInvalidState},
		{"unknown episode", func() (Result, error) {
			return f.h.PublishEpisode.Handle(ctx, PublishEpisode{EpisodeID: uuid.NewString()})
		}, false, ErrNotFound},
		{"malformed id", func() (Result, error) { return f.h.ArchiveEpisode.Handle(ctx, ArchiveEpisode{EpisodeID: "../x"}) }, false, ErrNotFound},
	}
	for _, s := range steps {
		res, err := s.run()
		if s.wantErr != nil {
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("%s: err = %v, want %v", s.name, err, s.wantErr)
			}
			continue
		}
		last := f.store.stream(c.StreamID)
		if err != nil || res.Changed != s.changed || res.ID != ep.ID || res.ProgramID != c.ID ||
			res.Version != int64(len(last)) || res.Position != last[len(last)-1].Position {
			t.Fatalf("%s: %+v %v", s.name, res, err)
		}
	}
	// The archived episode still holds its number.
	if _, err := f.h.AddEpisode.Handle(ctx, AddEpisode{ProgramID: c.ID, Title: "x", Number: 1, DurationSeconds: 1}); !errors.Is(err, program.ErrDuplicateEpisodeNumber) {
		t.Fatalf("archived number: %v", err)
	}
}

// TestPointerWithoutEpisode: a pointer whose add never reached the program's stream
// (or names a program without that episode) is not found.
func TestPointerWithoutEpisode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	episodeID := uuid.NewString()
	data, _ := json.Marshal(events.EpisodeRegistered{EpisodeID: episodeID, ProgramID: c.ID})
	if _, err := f.store.Append(ctx, events.EpisodeStreamID(episodeID), events.ExpectNoStream, []events.Envelope{{EventID: uuid.NewString(), Type: events.TypeEpisodeRegistered, Data: data}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.PublishEpisode.Handle(ctx, PublishEpisode{EpisodeID: episodeID}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("publish: %v", err)
	}
	if _, err := f.h.EpisodeByID.Handle(ctx, episodeID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read: %v", err)
	}
}

func TestViews(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cmd := validCreate()
	cmd.Tags = nil
	cmd.Meta.Actor = "alice"
	c, err := f.h.CreateProgram.Handle(ctx, cmd) // t0
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.h.ProgramByID.Handle(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(v)
	var asMap map[string]any
	if err := json.Unmarshal(raw, &asMap); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"category", "created_at", "description", "episodes", "external_id", "id", "language", "published_at", "status", "tags", "title", "updated_at", "version"}
	if got := keys(asMap); !reflect.DeepEqual(got, wantKeys) {
		t.Fatalf("program view keys = %v, want %v", got, wantKeys)
	}
	if !strings.Contains(string(raw), `"tags":[]`) || !strings.Contains(string(raw), `"published_at":null`) || !strings.Contains(string(raw), `"episodes":[]`) {
		t.Fatalf("draft view = %s", raw)
	}

	s2 := f.addEpisode(t, c.ID, 1, 2)                                                            // t0+1 (pointer), t0+2
	s1e2 := f.addEpisode(t, c.ID, 2, 1)                                                          // t0+3, t0+4
	s1e1 := f.addEpisode(t, c.ID, 1, 1)                                                          // t0+5, t0+6
	mustOK(t)(f.h.PublishProgram.Handle(ctx, PublishProgram{Meta: meta(), ProgramID: c.ID}))     // t0+7
	mustOK(t)(f.h.UnpublishProgram.Handle(ctx, UnpublishProgram{Meta: meta(), ProgramID: c.ID})) // t0+8
	mustOK(t)(f.h.PublishProgram.Handle(ctx, PublishProgram{Meta: meta(), ProgramID: c.ID}))     // t0+9
	mustOK(t)(f.h.PublishEpisode.Handle(ctx, PublishEpisode{Meta: meta(), EpisodeID: s1e2.ID}))  // t0+10

	v, err = f.h.ProgramByID.Handle(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != 8 || v.Status != "published" || v.PublishedAt == nil || !v.PublishedAt.Equal(t0.Add(7*time.Second)) ||
		!v.CreatedAt.Equal(t0) || !v.UpdatedAt.Equal(t0.Add(10*time.Second)) || v.CreatedAt.Location() != time.UTC {
		t.Fatalf("program view = %+v", v)
	}
	var order []string
	for _, e := range v.Episodes {
		order = append(order, e.ID)
		if e.Version != 8 {
			t.Fatalf("episode summary version %d, want the program's 8", e.Version)
		}
	}
	if want := []string{s1e1.ID, s1e2.ID, s2.ID}; !reflect.DeepEqual(order, want) {
		t.Fatalf("episode order = %v, want %v", order, want)
	}

	ev, err := f.h.EpisodeByID.Handle(ctx, s1e2.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := EpisodeView{ID: s1e2.ID, ProgramID: c.ID, Title: "Ep", Number: 2, Season: 1, DurationSeconds: 60, Status: "published", Version: 8,
		CreatedAt: t0.Add(4 * time.Second), UpdatedAt: t0.Add(10 * time.Second), PublishedAt: ptr(t0.Add(10 * time.Second))}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("episode view = %+v\nwant %+v", ev, want)
	}
	raw, _ = json.Marshal(ev)
	asMap = nil
	_ = json.Unmarshal(raw, &asMap)
	wantKeys = []string{"created_at", "description", "duration_seconds", "external_id", "id", "number", "program_id", "published_at", "season", "status", "title", "updated_at", "version"}
	if got := keys(asMap); !reflect.DeepEqual(got, wantKeys) {
		t.Fatalf("episode view keys = %v, want %v", got, wantKeys)
	}

	hist, err := f.h.ProgramHistory.Handle(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 8 || hist[0].Type != events.TypeProgramCreated || hist[0].Actor != "alice" || hist[0].Version != 1 ||
		hist[7].Type != events.TypeEpisodePublished || !hist[7].OccurredAt.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("history = %+v", hist)
	}
	for i := 1; i < len(hist); i++ {
		if hist[i].Position <= hist[i-1].Position || hist[i].Version != hist[i-1].Version+1 {
			t.Fatalf("history not oldest first: %+v", hist)
		}
	}
	raw, _ = json.Marshal(hist[0])
	asMap = nil
	_ = json.Unmarshal(raw, &asMap)
	if got := keys(asMap); !reflect.DeepEqual(got, []string{"actor", "data", "occurred_at", "position", "type", "version"}) {
		t.Fatalf("history keys = %v", got)
	}
	if d, ok := asMap["data"].(map[string]any); !ok || d["program_id"] != c.ID {
		t.Fatalf("history data = %v", asMap["data"])
	}

	for name, err := range map[string]error{
		"program":  second(f.h.ProgramByID.Handle(ctx, uuid.NewString())),
		"episode":  second(f.h.EpisodeByID.Handle(ctx, uuid.NewString())),
		"history":  second(f.h.ProgramHistory.Handle(ctx, uuid.NewString())),
		"bad id":   second(f.h.ProgramHistory.Handle(ctx, "x")),
		"empty id": second(f.h.ProgramByID.Handle(ctx, "")),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func mustOK(t *testing.T) func(Result, error) {
	t.Helper()
	return func(_ Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestNilStorePanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("NewHandlers(nil) did not panic")
		}
	}()
	NewHandlers(nil)
}

// TestConcurrentAddsSameNumber: two editors add the same number at once; the
// expected version makes exactly one win, the other's retry sees the number taken.
func TestConcurrentAddsSameNumber(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.create(t)
	const n = 8
	errs := make([]error, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f.h.AddEpisode.Handle(ctx, AddEpisode{ProgramID: c.ID, Title: "E", Number: 7, DurationSeconds: 1})
			ids[i], errs[i] = res.ID, err
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
			if _, err := f.h.EpisodeByID.Handle(ctx, ids[i]); err != nil {
				t.Errorf("winner not readable: %v", err)
			}
		case !errors.Is(err, program.ErrDuplicateEpisodeNumber):
			t.Errorf("loser err = %v, want ErrDuplicateEpisodeNumber", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d adds of the same number succeeded, want 1", won)
	}
	if v, err := f.h.ProgramByID.Handle(ctx, c.ID); err != nil || len(v.Episodes) != 1 || v.Version != 2 {
		t.Fatalf("program after race: %+v %v", v, err)
	}
}
