package app

import (
	"errors"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

func newJobID(t *testing.T) string {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

func upsertItem(job string, item int) UpsertProgram {
	return UpsertProgram{
		Meta: Meta{Actor: "feed-bot"}, JobID: job, Item: item,
		ExternalID: "acme:show-1", Title: "Show", Description: ptr("About"), Category: "news", Language: "en",
		Tags: ptr([]string{"a", "b"}), Published: ptr(true),
		Episodes: []UpsertEpisode{
			{ExternalID: "acme:ep-1", Title: "One", Number: 1, DurationSeconds: 600, Published: ptr(true)},
			{ExternalID: "acme:ep-2", Title: "Two", Number: 2, Season: ptr(1), DurationSeconds: 600},
		},
	}
}

// types returns the event types of a stream, in order.
func types(envs []events.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.Type
	}
	return out
}

func upsertFixture(t *testing.T) (*memStore, UpsertProgramHandler) {
	t.Helper()
	s := newMemStore()
	clock := &testClock{}
	return s, NewUpsertProgramHandler(s, WithClock(clock.now))
}

func TestUpsertCreatesInOneProgramAppend(t *testing.T) {
	t.Parallel()
	s, h := upsertFixture(t)
	job := newJobID(t)
	res, err := h.Handle(ctx, upsertItem(job, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || !res.Changed || res.Version != 5 {
		t.Fatalf("result %+v, want created at version 5", res)
	}
	if v, err := uuid.Parse(res.ID); err != nil || v.Version() != 7 {
		t.Fatalf("program id %q is not a UUIDv7", res.ID)
	}
	got := types(s.stream(events.ProgramStreamID(res.ID)))
	want := []string{events.TypeProgramCreated, events.TypeEpisodeAdded, events.TypeEpisodePublished, events.TypeEpisodeAdded, events.TypeProgramPublished}
	if !equalStrings(got, want) {
		t.Fatalf("program stream %v, want %v", got, want)
	}
	// 1 external-id pointer + 2 episode pointers + 1 program append.
	if n := s.writeCount(); n != 4 {
		t.Fatalf("%d appends, want 4 (the program's events in one)", n)
	}
	ptrEnvs := s.stream(events.ProgramExternalIDStreamID("acme:show-1"))
	if len(ptrEnvs) != 1 || ptrEnvs[0].Type != events.TypeProgramExternalIDRegistered {
		t.Fatalf("pointer stream %v", types(ptrEnvs))
	}
	l, err := h.core.loadProgram(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range l.program.Episodes() {
		pid, err := h.core.resolveEpisode(ctx, e.ID)
		if err != nil || pid != res.ID {
			t.Fatalf("episode %s resolves to %q, %v", e.ID, pid, err)
		}
	}
	if env := s.stream(events.ProgramStreamID(res.ID))[0]; env.Metadata.Actor != "feed-bot" {
		t.Fatalf("actor %q", env.Metadata.Actor)
	}
}

func TestUpsertSameItemAppendsNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		next func(first string) UpsertProgram
	}{
		{"same job redelivered", func(job string) UpsertProgram { return upsertItem(job, 0) }},
		{"another job", func(string) UpsertProgram { return upsertItem(uuid.Must(uuid.NewV7()).String(), 3) }},
		{"absent optional fields", func(string) UpsertProgram {
			it := upsertItem(uuid.Must(uuid.NewV7()).String(), 0)
			it.Description, it.Tags, it.Published = nil, nil, nil
			for i := range it.Episodes {
				it.Episodes[i].Season, it.Episodes[i].Description, it.Episodes[i].Published = nil, nil, nil
			}
			return it
		}},
		{"values equal after normalisation", func(string) UpsertProgram {
			it := upsertItem(uuid.Must(uuid.NewV7()).String(), 0)
			it.Title, it.Language, it.Tags = "  Show ", "EN", ptr([]string{"a", "b", "a"})
			return it
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, h := upsertFixture(t)
			job := newJobID(t)
			first, err := h.Handle(ctx, upsertItem(job, 0))
			if err != nil {
				t.Fatal(err)
			}
			writes := s.writeCount()
			res, err := h.Handle(ctx, tc.next(job))
			if err != nil {
				t.Fatal(err)
			}
			if res.Changed || res.ID != first.ID || res.Version != first.Version || res.Position != first.Position {
				t.Fatalf("second result %+v, first %+v", res, first)
			}
			if s.writeCount() != writes {
				t.Fatalf("the same item appended %d times more", s.writeCount()-writes)
			}
		})
	}
}

func TestUpsertChangesOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*UpsertProgram)
		want   []string
		check  func(t *testing.T, ev events.Event)
	}{
		{"title", func(it *UpsertProgram) { it.Title = "New title" }, []string{events.TypeProgramUpdated}, func(t *testing.T, ev events.Event) {
			up := ev.(events.ProgramUpdated)
			if up.Title == nil || *up.Title != "New title" || up.Description != nil || up.Tags != nil || up.Category != nil || up.Language != nil {
				t.Fatalf("update %+v, want the title only", up)
			}
		}},
		{"episode duration", func(it *UpsertProgram) { it.Episodes[1].DurationSeconds = 900 }, []string{events.TypeEpisodeUpdated}, func(t *testing.T, ev events.Event) {
			up := ev.(events.EpisodeUpdated)
			if up.DurationSeconds == nil || *up.DurationSeconds != 900 || up.Title != nil || up.Number != nil || up.Season != nil || up.Description != nil {
				t.Fatalf("update %+v, want the duration only", up)
			}
		}},
		{"new episode", func(it *UpsertProgram) {
			it.Episodes = append(it.Episodes, UpsertEpisode{ExternalID: "acme:ep-3", Title: "Three", Number: 3, DurationSeconds: 60})
		}, []string{events.TypeEpisodeAdded}, nil},
		{"unpublish", func(it *UpsertProgram) { it.Published = ptr(false) }, []string{events.TypeProgramUnpublished}, nil},
		{"unpublish an episode", func(it *UpsertProgram) { it.Episodes[0].Published = ptr(false) }, []string{events.TypeEpisodeUnpublished}, nil},
		{"not published leaves a draft episode a draft", func(it *UpsertProgram) { it.Episodes[1].Published = ptr(false) }, nil, nil},
		{"an episode left out is kept", func(it *UpsertProgram) { it.Episodes = it.Episodes[:1] }, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, h := upsertFixture(t)
			first, err := h.Handle(ctx, upsertItem(newJobID(t), 0))
			if err != nil {
				t.Fatal(err)
			}
			it := upsertItem(newJobID(t), 7)
			tc.change(&it)
			res, err := h.Handle(ctx, it)
			if err != nil {
				t.Fatal(err)
			}
			stream := s.stream(events.ProgramStreamID(first.ID))
			added := types(stream[first.Version:])
			if !equalStrings(added, tc.want) {
				t.Fatalf("appended %v, want %v", added, tc.want)
			}
			if res.Changed != (len(tc.want) > 0) || res.ID != first.ID {
				t.Fatalf("result %+v", res)
			}
			if tc.check != nil {
				ev, err := h.core.codec.DecodeEnvelope(stream[first.Version])
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, ev)
			}
		})
	}
}

func TestUpsertRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, h UpsertProgramHandler, programID string)
		item    func(*UpsertProgram)
		wantErr error
		fields  bool
	}{
		{"invalid fields", nil, func(it *UpsertProgram) { it.Title = ""; it.Episodes[0].DurationSeconds = 0 }, nil, true},
		{"season 0", nil, func(it *UpsertProgram) { it.Episodes[0].Season = ptr(0) }, nil, true},
		{"duplicate episode number in the item", nil, func(it *UpsertProgram) { it.Episodes[1].Number = 1 }, program.ErrDuplicateEpisodeNumber, false},
		{"archived program changed", archive, func(it *UpsertProgram) { it.Title = "Other" }, program.ErrInvalidState, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, h := upsertFixture(t)
			if tc.prepare != nil {
				first, err := h.Handle(ctx, upsertItem(newJobID(t), 0))
				if err != nil {
					t.Fatal(err)
				}
				tc.prepare(t, h, first.ID)
			}
			writes := s.writeCount()
			it := upsertItem(newJobID(t), 1)
			tc.item(&it)
			_, err := h.Handle(ctx, it)
			var ve *program.ValidationError
			switch {
			case tc.fields && !errors.As(err, &ve):
				t.Fatalf("err = %v, want *ValidationError", err)
			case !tc.fields && !errors.Is(err, tc.wantErr):
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if s.writeCount() != writes {
				t.Fatalf("a refused item wrote %d appends", s.writeCount()-writes)
			}
		})
	}
}

func archive(t *testing.T, h UpsertProgramHandler, programID string) {
	t.Helper()
	if _, err := NewArchiveProgramHandler(h.core.store).Handle(ctx, ArchiveProgram{Meta: meta(), ProgramID: programID}); err != nil {
		t.Fatal(err)
	}
}

func TestUpsertUnchangedArchivedProgramSucceeds(t *testing.T) {
	t.Parallel()
	s, h := upsertFixture(t)
	first, err := h.Handle(ctx, upsertItem(newJobID(t), 0))
	if err != nil {
		t.Fatal(err)
	}
	archive(t, h, first.ID)
	writes := s.writeCount()
	it := upsertItem(newJobID(t), 0)
	it.Published = nil
	if _, err := h.Handle(ctx, it); err != nil {
		t.Fatalf("unchanged item on an archived program: %v", err)
	}
	// "published": true asks for a change an archived program refuses.
	if _, err := h.Handle(ctx, upsertItem(newJobID(t), 0)); !errors.Is(err, program.ErrInvalidState) {
		t.Fatalf("publishing an archived program: err = %v, want ErrInvalidState", err)
	}
	if s.writeCount() != writes {
		t.Fatal("appended to an archived program")
	}
}

// TestUpsertRedeliveryAfterPartialWrite: the first delivery registered the pointers
// and then failed before the program's append; the redelivery creates the program
// under the registered id, with the same event ids, and nothing twice.
func TestUpsertRedeliveryAfterPartialWrite(t *testing.T) {
	t.Parallel()
	s, h := upsertFixture(t)
	job := newJobID(t)
	it := upsertItem(job, 4)
	programID := derivedID(job, "program/4")
	s.set(func(s *memStore) { s.failStream = events.ProgramStreamID(programID) })
	if _, err := h.Handle(ctx, it); !errors.Is(err, errBroken) {
		t.Fatalf("first delivery: err = %v, want the injected failure", err)
	}
	if len(s.stream(events.ProgramExternalIDStreamID(it.ExternalID))) != 1 {
		t.Fatal("the pointer was not registered before the program append")
	}
	res, err := h.Handle(ctx, it)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != programID || !res.Created {
		t.Fatalf("redelivery %+v, want program %s created", res, programID)
	}
	again, err := h.Handle(ctx, it)
	if err != nil || again.Changed {
		t.Fatalf("third delivery %+v, %v: want no change", again, err)
	}
	if n := len(s.stream(events.ProgramStreamID(programID))); n != 5 {
		t.Fatalf("program stream has %d events, want 5", n)
	}
	if n := s.streamCount(); n != 4 {
		t.Fatalf("%d streams, want 4 (program, its pointer, 2 episode pointers)", n)
	}
}

// TestUpsertConcurrentNewExternalID: two jobs bring the same new external id at
// once; one program is created, the other item updates it.
func TestUpsertConcurrentNewExternalID(t *testing.T) {
	t.Parallel()
	for round := 0; round < 20; round++ {
		s, h := upsertFixture(t)
		var wg sync.WaitGroup
		results := make([]Result, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				it := upsertItem(uuid.Must(uuid.NewV7()).String(), i)
				if i == 1 {
					it.Title = "Other title"
				}
				results[i], errs[i] = h.Handle(ctx, it)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if results[0].ID != results[1].ID {
			t.Fatalf("one external id became programs %s and %s", results[0].ID, results[1].ID)
		}
		programs := 0
		for id := range s.streams {
			if len(id) == len("program-")+36 && id[:8] == "program-" {
				programs++
			}
		}
		if programs != 1 {
			t.Fatalf("%d program streams, want 1", programs)
		}
		l, err := h.core.loadProgram(ctx, results[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range l.program.Episodes() {
			if pid, err := h.core.resolveEpisode(ctx, e.ID); err != nil || pid != results[0].ID {
				t.Fatalf("episode %s resolves to %q (%v), want the winner %s", e.ID, pid, err, results[0].ID)
			}
		}
	}
}

func TestUpsertRetriesOnConflict(t *testing.T) {
	t.Parallel()
	s, h := upsertFixture(t)
	first, err := h.Handle(ctx, upsertItem(newJobID(t), 0))
	if err != nil {
		t.Fatal(err)
	}
	it := upsertItem(newJobID(t), 0)
	it.Title = "Retitled"
	s.set(func(s *memStore) { s.conflicts = 2 })
	res, err := h.Handle(ctx, it)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != first.Version+1 {
		t.Fatalf("version %d, want %d", res.Version, first.Version+1)
	}
}

func TestDerivedID(t *testing.T) {
	t.Parallel()
	job := newJobID(t)
	a, b := derivedID(job, "program/1"), derivedID(job, "program/1")
	c := derivedID(job, "program/2")
	if a != b || a == c {
		t.Fatalf("derived ids %s %s %s: want equal for equal names only", a, b, c)
	}
	u := uuid.MustParse(a)
	j := uuid.MustParse(job)
	if u.Version() != 7 || u.Variant() != uuid.RFC4122 || u.Time() != j.Time() {
		t.Fatalf("derived id %s: version %d variant %v time %v, want v7 at the job's time %v", a, u.Version(), u.Variant(), u.Time(), j.Time())
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
