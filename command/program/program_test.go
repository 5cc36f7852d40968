package program_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

const (
	pid = "p-1"
	e1  = "e-1"
	e2  = "e-2"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// given rebuilds a program from events, one second apart from t0, versions from 1.
func given(t *testing.T, evs ...events.Event) *program.Program {
	t.Helper()
	rs := make([]program.Recorded, len(evs))
	for i, e := range evs {
		rs[i] = program.Recorded{Event: e, Version: int64(i + 1), OccurredAt: t0.Add(time.Duration(i) * time.Second)}
	}
	p, err := program.Load(rs)
	if err != nil {
		t.Fatalf("load given events: %v", err)
	}
	return p
}

var (
	created = events.ProgramCreated{ProgramID: pid, Title: "Show", Description: "d", Category: "news", Language: "en", Tags: []string{"a", "b"}}
	pub     = events.ProgramPublished{ProgramID: pid}
	unpub   = events.ProgramUnpublished{ProgramID: pid}
	arch    = events.ProgramArchived{ProgramID: pid}
	ep1     = events.EpisodeAdded{ProgramID: pid, EpisodeID: e1, Title: "One", Number: 1, Season: 1, DurationSeconds: 60}
	ep2s2   = events.EpisodeAdded{ProgramID: pid, EpisodeID: e2, Title: "Two", Number: 2, Season: 2, DurationSeconds: 60}
	ep1Pub  = events.EpisodePublished{ProgramID: pid, EpisodeID: e1}
	ep1Unp  = events.EpisodeUnpublished{ProgramID: pid, EpisodeID: e1}
	ep1Arch = events.EpisodeArchived{ProgramID: pid, EpisodeID: e1}
)

func validEpisode(number, season int) program.NewEpisode {
	return program.NewEpisode{Title: "New", Number: number, Season: season, DurationSeconds: 1800}
}

// check asserts the outcome of a command: the recorded events, or an error that is
// (errors.Is) wantErr, or a *ValidationError naming exactly wantFields.
func check(t *testing.T, p *program.Program, err error, then []events.Event, wantErr error, wantFields []string) {
	t.Helper()
	switch {
	case wantFields != nil:
		var ve *program.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("err = %v, want a *ValidationError", err)
		}
		var got []string
		for _, f := range ve.Fields {
			got = append(got, f.Field)
			if f.Message == "" {
				t.Errorf("field %s has no message", f.Field)
			}
		}
		if !reflect.DeepEqual(got, wantFields) {
			t.Fatalf("invalid fields = %v, want %v (%v)", got, wantFields, err)
		}
	case wantErr != nil:
		if !errors.Is(err, wantErr) {
			t.Fatalf("err = %v, want %v", err, wantErr)
		}
	default:
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if err != nil && p != nil && len(p.Pending()) != 0 {
		t.Fatalf("a failed command recorded %v", p.Pending())
	}
	if err == nil {
		got := p.Pending()
		if len(then) == 0 && len(got) == 0 {
			return
		}
		if !reflect.DeepEqual(got, then) {
			t.Fatalf("recorded %#v\nwant     %#v", got, then)
		}
	}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         program.NewProgram
		then       events.Event
		wantFields []string
	}{
		{
			name: "normalises title, language and tags",
			in:   program.NewProgram{Title: "  Show ", Category: "world-news", Language: "en-us", Tags: []string{"b", "a", "b"}, ExternalID: "ext 1"},
			then: events.ProgramCreated{ProgramID: pid, Title: "Show", Category: "world-news", Language: "en-US", Tags: []string{"b", "a"}, ExternalID: "ext 1"},
		},
		{
			name: "no tags is an empty list",
			in:   program.NewProgram{Title: "Show", Category: "news", Language: "pt-BR"},
			then: events.ProgramCreated{ProgramID: pid, Title: "Show", Category: "news", Language: "pt-BR", Tags: []string{}},
		},
		{
			name: "200 multi-byte characters fit",
			in:   program.NewProgram{Title: strings.Repeat("é", 200), Category: "news", Language: "fr", Description: strings.Repeat("ü", 5000)},
			then: events.ProgramCreated{ProgramID: pid, Title: strings.Repeat("é", 200), Category: "news", Language: "fr", Description: strings.Repeat("ü", 5000), Tags: []string{}},
		},
		{
			name: "20 distinct tags after removing duplicates",
			in:   program.NewProgram{Title: "Show", Category: "news", Language: "en", Tags: append(tags(20), "t1")},
			then: events.ProgramCreated{ProgramID: pid, Title: "Show", Category: "news", Language: "en", Tags: tags(20)},
		},
		{
			name:       "every invalid field at once",
			in:         program.NewProgram{Title: "   ", Description: strings.Repeat("x", 5001), Category: "Bad Cat", Language: "not a language!", Tags: []string{"ok", "NotOk"}, ExternalID: "a\x01b"},
			wantFields: []string{"title", "description", "category", "language", "tags", "external_id"},
		},
		{
			name:       "too long values",
			in:         program.NewProgram{Title: strings.Repeat("é", 201), Category: strings.Repeat("a", 65), Language: "en", Tags: []string{strings.Repeat("t", 65)}, ExternalID: strings.Repeat("x", 201)},
			wantFields: []string{"title", "category", "tags", "external_id"},
		},
		{
			name:       "missing category and language, 21 tags",
			in:         program.NewProgram{Title: "Show", Tags: tags(21)},
			wantFields: []string{"category", "language", "tags"},
		},
		{
			name:       "slug rules",
			in:         program.NewProgram{Title: "Show", Category: "a--b", Language: "zz", Tags: []string{"-a"}},
			wantFields: []string{"category", "language", "tags"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := program.Create(pid, tc.in)
			var then []events.Event
			if tc.then != nil {
				then = []events.Event{tc.then}
			}
			check(t, p, err, then, nil, tc.wantFields)
			if err == nil && (p.Status() != program.StatusDraft || p.Version() != 0 || p.ID() != pid) {
				t.Fatalf("new program: status %s version %d id %s", p.Status(), p.Version(), p.ID())
			}
		})
	}
}

func tags(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "t" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
	}
	out[0] = "t1"
	return out
}

func TestBehaviour(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		given      []events.Event
		when       func(*program.Program) error
		then       []events.Event
		wantErr    error
		wantFields []string
	}{
		// Program publication machine.
		{name: "publish draft", given: []events.Event{created}, when: (*program.Program).Publish, then: []events.Event{pub}},
		{name: "publish unpublished", given: []events.Event{created, pub, unpub}, when: (*program.Program).Publish, then: []events.Event{pub}},
		{name: "publish published is a no-op", given: []events.Event{created, pub}, when: (*program.Program).Publish},
		{name: "publish archived", given: []events.Event{created, arch}, when: (*program.Program).Publish, wantErr: program.ErrInvalidState},
		{name: "unpublish published", given: []events.Event{created, pub}, when: (*program.Program).Unpublish, then: []events.Event{unpub}},
		{name: "unpublish unpublished is a no-op", given: []events.Event{created, pub, unpub}, when: (*program.Program).Unpublish},
		{name: "unpublish draft", given: []events.Event{created}, when: (*program.Program).Unpublish, wantErr: program.ErrInvalidState},
		{name: "unpublish archived", given: []events.Event{created, pub, arch}, when: (*program.Program).Unpublish, wantErr: program.ErrInvalidState},
		{name: "archive draft", given: []events.Event{created}, when: (*program.Program).Archive, then: []events.Event{arch}},
		{name: "archive published", given: []events.Event{created, pub}, when: (*program.Program).Archive, then: []events.Event{arch}},
		{name: "archive unpublished", given: []events.Event{created, pub, unpub}, when: (*program.Program).Archive, then: []events.Event{arch}},
		{name: "archive archived is a no-op", given: []events.Event{created, arch}, when: (*program.Program).Archive},

		// Program updates.
		{
			name:  "update records only changed fields",
			given: []events.Event{created},
			when: func(p *program.Program) error {
				return p.Update(program.ProgramChanges{Title: ptr(" Show "), Description: ptr("new"), Category: ptr("news"), Language: ptr("EN-gb"), Tags: ptr([]string{"b", "a"})})
			},
			then: []events.Event{events.ProgramUpdated{ProgramID: pid, Description: ptr("new"), Language: ptr("en-GB"), Tags: ptr([]string{"b", "a"})}},
		},
		{
			name:  "update with the current values is a no-op",
			given: []events.Event{created},
			when: func(p *program.Program) error {
				return p.Update(program.ProgramChanges{Title: ptr("Show"), Description: ptr("d"), Category: ptr("news"), Language: ptr("EN"), Tags: ptr([]string{"a", "b", "a"})})
			},
		},
		{
			name:  "update to no tags",
			given: []events.Event{created},
			when:  func(p *program.Program) error { return p.Update(program.ProgramChanges{Tags: ptr([]string(nil))}) },
			then:  []events.Event{events.ProgramUpdated{ProgramID: pid, Tags: ptr([]string{})}},
		},
		{
			name:  "update lists every invalid field",
			given: []events.Event{created},
			when: func(p *program.Program) error {
				return p.Update(program.ProgramChanges{Title: ptr(""), Category: ptr("UPPER"), Language: ptr("??"), Tags: ptr(tags(21))})
			},
			wantFields: []string{"title", "category", "language", "tags"},
		},
		{
			name:    "update archived",
			given:   []events.Event{created, arch},
			when:    func(p *program.Program) error { return p.Update(program.ProgramChanges{Title: ptr("Other")}) },
			wantErr: program.ErrInvalidState,
		},
		{
			name:    "update archived with the same values is still refused",
			given:   []events.Event{created, arch},
			when:    func(p *program.Program) error { return p.Update(program.ProgramChanges{Title: ptr("Show")}) },
			wantErr: program.ErrInvalidState,
		},

		// Adding episodes.
		{
			name:  "add episode defaults to season 1",
			given: []events.Event{created},
			when:  func(p *program.Program) error { return p.AddEpisode(e1, validEpisode(1, 0)) },
			then:  []events.Event{events.EpisodeAdded{ProgramID: pid, EpisodeID: e1, Title: "New", Number: 1, Season: 1, DurationSeconds: 1800}},
		},
		{
			name:  "same number in another season",
			given: []events.Event{created, ep1},
			when:  func(p *program.Program) error { return p.AddEpisode(e2, validEpisode(1, 2)) },
			then:  []events.Event{events.EpisodeAdded{ProgramID: pid, EpisodeID: e2, Title: "New", Number: 1, Season: 2, DurationSeconds: 1800}},
		},
		{
			name:    "duplicate number in the season",
			given:   []events.Event{created, ep1},
			when:    func(p *program.Program) error { return p.AddEpisode(e2, validEpisode(1, 1)) },
			wantErr: program.ErrDuplicateEpisodeNumber,
		},
		{
			name:    "archived episodes keep their number",
			given:   []events.Event{created, ep1, ep1Arch},
			when:    func(p *program.Program) error { return p.AddEpisode(e2, validEpisode(1, 0)) },
			wantErr: program.ErrDuplicateEpisodeNumber,
		},
		{
			name:    "add episode to archived program",
			given:   []events.Event{created, arch},
			when:    func(p *program.Program) error { return p.AddEpisode(e2, validEpisode(5, 1)) },
			wantErr: program.ErrInvalidState,
		},
		{
			name:  "add episode lists every invalid field",
			given: []events.Event{created},
			when: func(p *program.Program) error {
				return p.AddEpisode(e2, program.NewEpisode{Title: "", Number: 0, Season: -1, Description: strings.Repeat("x", 5001), DurationSeconds: 86401, ExternalID: "\n"})
			},
			wantFields: []string{"title", "number", "season", "description", "duration_seconds", "external_id"},
		},
		{
			name:       "zero duration",
			given:      []events.Event{created},
			when:       func(p *program.Program) error { return p.AddEpisode(e2, withDuration(validEpisode(1, 1), 0)) },
			wantFields: []string{"duration_seconds"},
		},
		{
			name:  "longest duration",
			given: []events.Event{created},
			when:  func(p *program.Program) error { return p.AddEpisode(e2, withDuration(validEpisode(1, 1), 86400)) },
			then:  []events.Event{events.EpisodeAdded{ProgramID: pid, EpisodeID: e2, Title: "New", Number: 1, Season: 1, DurationSeconds: 86400}},
		},

		// Updating episodes.
		{
			name:  "update episode records only changed fields",
			given: []events.Event{created, ep1},
			when: func(p *program.Program) error {
				return p.UpdateEpisode(e1, program.EpisodeChanges{Title: ptr("One"), Number: ptr(3), Season: ptr(1), DurationSeconds: ptr(90)})
			},
			then: []events.Event{events.EpisodeUpdated{ProgramID: pid, EpisodeID: e1, Number: ptr(3), DurationSeconds: ptr(90)}},
		},
		{
			name:  "update episode with the current values is a no-op",
			given: []events.Event{created, ep1},
			when: func(p *program.Program) error {
				return p.UpdateEpisode(e1, program.EpisodeChanges{Title: ptr("One "), Number: ptr(1), Season: ptr(1), Description: ptr(""), DurationSeconds: ptr(60)})
			},
		},
		{
			name:  "update episode to a taken number",
			given: []events.Event{created, ep1, ep2s2},
			when: func(p *program.Program) error {
				return p.UpdateEpisode(e1, program.EpisodeChanges{Number: ptr(2), Season: ptr(2)})
			},
			wantErr: program.ErrDuplicateEpisodeNumber,
		},
		{
			name:    "moving to a season where the number is taken",
			given:   []events.Event{created, ep1, events.EpisodeAdded{ProgramID: pid, EpisodeID: e2, Title: "Two", Number: 1, Season: 2, DurationSeconds: 60}},
			when:    func(p *program.Program) error { return p.UpdateEpisode(e1, program.EpisodeChanges{Season: ptr(2)}) },
			wantErr: program.ErrDuplicateEpisodeNumber,
		},
		{
			name:  "moving to a season where the number is free",
			given: []events.Event{created, ep1, ep2s2},
			when:  func(p *program.Program) error { return p.UpdateEpisode(e1, program.EpisodeChanges{Season: ptr(2)}) },
			then:  []events.Event{events.EpisodeUpdated{ProgramID: pid, EpisodeID: e1, Season: ptr(2)}},
		},
		{
			name:  "update episode lists every invalid field",
			given: []events.Event{created, ep1},
			when: func(p *program.Program) error {
				return p.UpdateEpisode(e1, program.EpisodeChanges{Title: ptr(" "), Number: ptr(-1), Season: ptr(0), DurationSeconds: ptr(0)})
			},
			wantFields: []string{"title", "number", "season", "duration_seconds"},
		},
		{
			name:    "update archived episode",
			given:   []events.Event{created, ep1, ep1Arch},
			when:    func(p *program.Program) error { return p.UpdateEpisode(e1, program.EpisodeChanges{Title: ptr("x")}) },
			wantErr: program.ErrInvalidState,
		},
		{
			name:    "update episode of archived program",
			given:   []events.Event{created, ep1, arch},
			when:    func(p *program.Program) error { return p.UpdateEpisode(e1, program.EpisodeChanges{Title: ptr("x")}) },
			wantErr: program.ErrInvalidState,
		},
		{
			name:    "update unknown episode",
			given:   []events.Event{created},
			when:    func(p *program.Program) error { return p.UpdateEpisode(e1, program.EpisodeChanges{Title: ptr("x")}) },
			wantErr: program.ErrEpisodeNotFound,
		},

		// Episode publication machine.
		{name: "publish draft episode", given: []events.Event{created, ep1}, when: pubEp, then: []events.Event{ep1Pub}},
		{name: "publish unpublished episode", given: []events.Event{created, ep1, ep1Pub, ep1Unp}, when: pubEp, then: []events.Event{ep1Pub}},
		{name: "publish published episode is a no-op", given: []events.Event{created, ep1, ep1Pub}, when: pubEp},
		{name: "publish archived episode", given: []events.Event{created, ep1, ep1Arch}, when: pubEp, wantErr: program.ErrInvalidState},
		{name: "publish episode of archived program", given: []events.Event{created, ep1, arch}, when: pubEp, wantErr: program.ErrInvalidState},
		{name: "publish unknown episode", given: []events.Event{created}, when: pubEp, wantErr: program.ErrEpisodeNotFound},
		{name: "unpublish published episode", given: []events.Event{created, ep1, ep1Pub}, when: unpubEp, then: []events.Event{ep1Unp}},
		{name: "unpublish unpublished episode is a no-op", given: []events.Event{created, ep1, ep1Pub, ep1Unp}, when: unpubEp},
		{name: "unpublish draft episode", given: []events.Event{created, ep1}, when: unpubEp, wantErr: program.ErrInvalidState},
		{name: "unpublish archived episode", given: []events.Event{created, ep1, ep1Pub, ep1Arch}, when: unpubEp, wantErr: program.ErrInvalidState},
		{name: "unpublish unknown episode", given: []events.Event{created}, when: unpubEp, wantErr: program.ErrEpisodeNotFound},
		{name: "archive draft episode", given: []events.Event{created, ep1}, when: archEp, then: []events.Event{ep1Arch}},
		{name: "archive published episode", given: []events.Event{created, ep1, ep1Pub}, when: archEp, then: []events.Event{ep1Arch}},
		{name: "archive unpublished episode", given: []events.Event{created, ep1, ep1Pub, ep1Unp}, when: archEp, then: []events.Event{ep1Arch}},
		{name: "archive archived episode is a no-op", given: []events.Event{created, ep1, ep1Arch}, when: archEp},
		{name: "archive archived episode of archived program is a no-op", given: []events.Event{created, ep1, ep1Arch, arch}, when: archEp},
		{name: "archive episode of archived program", given: []events.Event{created, ep1, arch}, when: archEp, wantErr: program.ErrInvalidState},
		{name: "archive unknown episode", given: []events.Event{created}, when: archEp, wantErr: program.ErrEpisodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := given(t, tc.given...)
			check(t, p, tc.when(p), tc.then, tc.wantErr, tc.wantFields)
			if p.Version() != int64(len(tc.given)) {
				t.Fatalf("version = %d, want %d (pending events must not count)", p.Version(), len(tc.given))
			}
		})
	}
}

func pubEp(p *program.Program) error   { return p.PublishEpisode(e1) }
func unpubEp(p *program.Program) error { return p.UnpublishEpisode(e1) }
func archEp(p *program.Program) error  { return p.ArchiveEpisode(e1) }

func TestRecordedEventsChangeState(t *testing.T) {
	t.Parallel()
	p := given(t, created)
	if err := p.Publish(); err != nil {
		t.Fatal(err)
	}
	if p.Status() != program.StatusPublished {
		t.Fatalf("status after Publish = %s", p.Status())
	}
	// A second publish sees the pending one and records nothing more.
	if err := p.Publish(); err != nil || len(p.Pending()) != 1 {
		t.Fatalf("second publish: %v, pending %d", err, len(p.Pending()))
	}
	if err := p.AddEpisode(e1, validEpisode(1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.AddEpisode(e2, validEpisode(1, 1)); !errors.Is(err, program.ErrDuplicateEpisodeNumber) {
		t.Fatalf("pending episode must hold its number: %v", err)
	}
}

func TestLoadRebuildsViewState(t *testing.T) {
	t.Parallel()
	p := given(t,
		created, // t0
		events.EpisodeAdded{ProgramID: pid, EpisodeID: e2, Title: "S2E1", Number: 1, Season: 2, DurationSeconds: 5},    // t0+1
		events.EpisodeAdded{ProgramID: pid, EpisodeID: e1, Title: "S1E2", Number: 2, Season: 1, DurationSeconds: 5},    // t0+2
		events.EpisodeAdded{ProgramID: pid, EpisodeID: "e-3", Title: "S1E1", Number: 1, Season: 1, DurationSeconds: 5}, // t0+3
		pub,   // t0+4
		unpub, // t0+5
		pub,   // t0+6
		events.ProgramUpdated{ProgramID: pid, Title: ptr("Renamed"), Tags: ptr([]string{"z"})}, // t0+7
		events.EpisodePublished{ProgramID: pid, EpisodeID: e1},                                 // t0+8
		events.EpisodeUpdated{ProgramID: pid, EpisodeID: e1, Description: ptr("desc")},         // t0+9
	)
	if p.Version() != 10 || p.Title() != "Renamed" || !reflect.DeepEqual(p.Tags(), []string{"z"}) || p.Status() != program.StatusPublished {
		t.Fatalf("state: version %d title %q tags %v status %s", p.Version(), p.Title(), p.Tags(), p.Status())
	}
	if !p.CreatedAt().Equal(t0) || !p.UpdatedAt().Equal(t0.Add(9*time.Second)) {
		t.Fatalf("created %v updated %v", p.CreatedAt(), p.UpdatedAt())
	}
	if pa := p.PublishedAt(); pa == nil || !pa.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("published_at = %v, want the first publication", pa)
	}
	var order []string
	for _, e := range p.Episodes() {
		order = append(order, e.Title)
	}
	if want := []string{"S1E1", "S1E2", "S2E1"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("episode order = %v, want %v", order, want)
	}
	e, ok := p.Episode(e1)
	if !ok || e.Status != program.StatusPublished || e.Description != "desc" ||
		!e.CreatedAt.Equal(t0.Add(2*time.Second)) || !e.UpdatedAt.Equal(t0.Add(9*time.Second)) ||
		e.PublishedAt == nil || !e.PublishedAt.Equal(t0.Add(8*time.Second)) {
		t.Fatalf("episode = %+v", e)
	}
	if other, _ := p.Episode(e2); other.PublishedAt != nil || other.Status != program.StatusDraft {
		t.Fatalf("unpublished episode = %+v", other)
	}
	// Accessors hand out copies.
	p.Tags()[0] = "mutated"
	if p.Tags()[0] != "z" {
		t.Fatal("Tags exposes internal state")
	}
}

func TestLoadRejectsBadStreams(t *testing.T) {
	t.Parallel()
	tests := map[string][]program.Recorded{
		"empty":            nil,
		"no created first": {{Event: pub, Version: 1}},
		"foreign event":    {{Event: created, Version: 1}, {Event: events.EpisodeRegistered{EpisodeID: e1, ProgramID: pid}, Version: 2}},
		"unknown episode":  {{Event: created, Version: 1}, {Event: ep1Pub, Version: 2}},
		"episode twice":    {{Event: created, Version: 1}, {Event: ep1, Version: 2}, {Event: ep1, Version: 3}},
		"created twice":    {{Event: created, Version: 1}, {Event: created, Version: 2}},
	}
	for name, rs := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := program.Load(rs); err == nil {
				t.Fatal("Load accepted a broken stream")
			}
		})
	}
}

func TestValidationErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := program.Create(pid, program.NewProgram{})
	if err == nil || !strings.Contains(err.Error(), "title: must not be empty") || !strings.Contains(err.Error(), "language:") {
		t.Fatalf("message = %v", err)
	}
}

func withDuration(e program.NewEpisode, d int) program.NewEpisode {
	e.DurationSeconds = d
	return e
}
