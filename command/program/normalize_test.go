package program_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ve *program.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want *ValidationError", err)
	}
	out := []string{}
	for _, f := range ve.Fields {
		out = append(out, f.Field)
	}
	return out
}

// TestNormalizeNewProgramAgreesWithCreate: the exported check accepts and rejects
// exactly what Create does, and returns what Create records.
func TestNormalizeNewProgramAgreesWithCreate(t *testing.T) {
	t.Parallel()
	valid := program.NewProgram{Title: "  Show ", Description: "d", Category: "news", Language: "EN-us", Tags: []string{"a", "b", "a"}, ExternalID: "x:1"}
	tests := []struct {
		name       string
		mut        func(*program.NewProgram)
		wantFields []string
	}{
		{"valid, normalised", func(*program.NewProgram) {}, nil},
		{"nil tags", func(p *program.NewProgram) { p.Tags = nil }, nil},
		{"empty title", func(p *program.NewProgram) { p.Title = "  " }, []string{"title"}},
		{"long title", func(p *program.NewProgram) { p.Title = strings.Repeat("é", 201) }, []string{"title"}},
		{"bad category and language", func(p *program.NewProgram) { p.Category = "News"; p.Language = "??" }, []string{"category", "language"}},
		{"bad tag", func(p *program.NewProgram) { p.Tags = []string{"ok", "Not OK"} }, []string{"tags"}},
		{"too many tags", func(p *program.NewProgram) {
			p.Tags = nil
			for i := 0; i < 21; i++ {
				p.Tags = append(p.Tags, "t"+strings.Repeat("x", i))
			}
		}, []string{"tags"}},
		{"invalid utf-8 description", func(p *program.NewProgram) { p.Description = "a\xffb" }, []string{"description"}},
		{"unprintable external id", func(p *program.NewProgram) { p.ExternalID = "a\x00b" }, []string{"external_id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := valid
			in.Tags = append([]string(nil), valid.Tags...)
			tc.mut(&in)
			norm, err := program.NormalizeNewProgram(in)
			if got := fieldsOf(t, err); !reflect.DeepEqual(got, tc.wantFields) {
				t.Fatalf("fields = %v, want %v", got, tc.wantFields)
			}
			p, cerr := program.Create("p-1", in)
			if got := fieldsOf(t, cerr); !reflect.DeepEqual(got, tc.wantFields) {
				t.Fatalf("Create fields = %v, want %v (the two must agree)", got, tc.wantFields)
			}
			if err != nil {
				return
			}
			created := p.Pending()[0].(events.ProgramCreated)
			want := events.ProgramCreated{ProgramID: "p-1", Title: norm.Title, Description: norm.Description, Category: norm.Category, Language: norm.Language, Tags: norm.Tags, ExternalID: norm.ExternalID}
			if !reflect.DeepEqual(created, want) {
				t.Fatalf("Create recorded %+v, normalised %+v", created, want)
			}
		})
	}
}

func TestNormalizeNewEpisodeAgreesWithAddEpisode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         program.NewEpisode
		wantSeason int
		wantFields []string
	}{
		{"default season", program.NewEpisode{Title: " One ", Number: 1, DurationSeconds: 60}, 1, nil},
		{"season 3", program.NewEpisode{Title: "One", Number: 1, Season: 3, DurationSeconds: 60}, 3, nil},
		{"everything wrong", program.NewEpisode{Title: "", Number: 0, Season: -1, DurationSeconds: 86401}, 0, []string{"title", "number", "season", "duration_seconds"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			norm, err := program.NormalizeNewEpisode(tc.in)
			if got := fieldsOf(t, err); !reflect.DeepEqual(got, tc.wantFields) {
				t.Fatalf("fields = %v, want %v", got, tc.wantFields)
			}
			p := given(t, created)
			aerr := p.AddEpisode("e-9", tc.in)
			if got := fieldsOf(t, aerr); !reflect.DeepEqual(got, tc.wantFields) {
				t.Fatalf("AddEpisode fields = %v, want %v", got, tc.wantFields)
			}
			if err != nil {
				return
			}
			added := p.Pending()[0].(events.EpisodeAdded)
			if norm.Season != tc.wantSeason || added.Season != norm.Season || added.Title != norm.Title {
				t.Fatalf("normalised %+v, recorded %+v", norm, added)
			}
		})
	}
}

func TestNormalizeEpisodeChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		ch         program.EpisodeChanges
		wantFields []string
	}{
		{"nothing", program.EpisodeChanges{}, nil},
		{"season 0 has no default here", program.EpisodeChanges{Season: ptr(0)}, []string{"season"}},
		{"valid", program.EpisodeChanges{Title: ptr(" T "), Season: ptr(2), Number: ptr(3), Description: ptr(""), DurationSeconds: ptr(10)}, nil},
		{"bad number and duration", program.EpisodeChanges{Number: ptr(-1), DurationSeconds: ptr(0)}, []string{"number", "duration_seconds"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			norm, err := program.NormalizeEpisodeChanges(tc.ch)
			if got := fieldsOf(t, err); !reflect.DeepEqual(got, tc.wantFields) {
				t.Fatalf("fields = %v, want %v", got, tc.wantFields)
			}
			p := given(t, created, ep1)
			uerr := p.UpdateEpisode(e1, tc.ch)
			if got := fieldsOf(t, uerr); !reflect.DeepEqual(got, tc.wantFields) {
				t.Fatalf("UpdateEpisode fields = %v, want %v", got, tc.wantFields)
			}
			if err == nil && norm.Title != nil && *norm.Title != "T" {
				t.Fatalf("title not trimmed: %q", *norm.Title)
			}
		})
	}
}
