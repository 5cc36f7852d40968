package program_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/mediamesh/mediamesh/command/program"
)

// controls lists every C0 control and DEL with a printable name for sub-tests.
func controls() map[string]rune {
	out := map[string]rune{"U+007F": 0x7f}
	for r := rune(0); r < 0x20; r++ {
		out[fmt.Sprintf("U+%04X", r)] = r
	}
	return out
}

// TestControlCharactersRejected: every entry point of the aggregate refuses C0
// controls and DEL in one-line fields and U+0000 everywhere, so no event carries a
// character that PostgreSQL text/jsonb cannot store (a poison event for every
// projection); descriptions keep tab, line feed and carriage return.
func TestControlCharactersRejected(t *testing.T) {
	t.Parallel()
	newProgram := program.NewProgram{Title: "Show", Description: "d", Category: "news", Language: "en", Tags: []string{"a"}, ExternalID: "x:1"}
	newEpisode := program.NewEpisode{Title: "Ep", Number: 1, Description: "d", DurationSeconds: 60, ExternalID: "e:1"}
	// Each entry point applies one string to one field and returns the fields it refused.
	entries := []struct {
		name  string
		field string
		apply func(t *testing.T, s string) error
	}{
		{"Create title", "title", func(t *testing.T, s string) error {
			in := newProgram
			in.Title = "A" + s + "B"
			_, err := program.Create("p-1", in)
			return err
		}},
		{"Create description", "description", func(t *testing.T, s string) error {
			in := newProgram
			in.Description = "A" + s + "B"
			_, err := program.Create("p-1", in)
			return err
		}},
		{"Create external id", "external_id", func(t *testing.T, s string) error {
			in := newProgram
			in.ExternalID = "A" + s + "B"
			_, err := program.Create("p-1", in)
			return err
		}},
		{"Create tag", "tags", func(t *testing.T, s string) error {
			in := newProgram
			in.Tags = []string{"a" + s + "b"}
			_, err := program.Create("p-1", in)
			return err
		}},
		{"Create category", "category", func(t *testing.T, s string) error {
			in := newProgram
			in.Category = "a" + s + "b"
			_, err := program.Create("p-1", in)
			return err
		}},
		{"Create language", "language", func(t *testing.T, s string) error {
			in := newProgram
			in.Language = "en" + s
			_, err := program.Create("p-1", in)
			return err
		}},
		{"NormalizeNewProgram title", "title", func(t *testing.T, s string) error {
			in := newProgram
			in.Title = "A" + s + "B"
			_, err := program.NormalizeNewProgram(in)
			return err
		}},
		{"NormalizeNewProgram description", "description", func(t *testing.T, s string) error {
			in := newProgram
			in.Description = s
			_, err := program.NormalizeNewProgram(in)
			return err
		}},
		{"Update title", "title", func(t *testing.T, s string) error {
			v := "A" + s + "B"
			return mustCreate(t, newProgram).Update(program.ProgramChanges{Title: &v})
		}},
		{"Update description", "description", func(t *testing.T, s string) error {
			v := "A" + s + "B"
			return mustCreate(t, newProgram).Update(program.ProgramChanges{Description: &v})
		}},
		{"AddEpisode title", "title", func(t *testing.T, s string) error {
			in := newEpisode
			in.Title = "A" + s + "B"
			return mustCreate(t, newProgram).AddEpisode("e-1", in)
		}},
		{"AddEpisode description", "description", func(t *testing.T, s string) error {
			in := newEpisode
			in.Description = "A" + s + "B"
			return mustCreate(t, newProgram).AddEpisode("e-1", in)
		}},
		{"AddEpisode external id", "external_id", func(t *testing.T, s string) error {
			in := newEpisode
			in.ExternalID = "A" + s + "B"
			return mustCreate(t, newProgram).AddEpisode("e-1", in)
		}},
		{"NormalizeNewEpisode title", "title", func(t *testing.T, s string) error {
			in := newEpisode
			in.Title = "A" + s + "B"
			_, err := program.NormalizeNewEpisode(in)
			return err
		}},
		{"UpdateEpisode title", "title", func(t *testing.T, s string) error {
			p := mustCreate(t, newProgram)
			if err := p.AddEpisode("e-1", newEpisode); err != nil {
				t.Fatal(err)
			}
			v := "A" + s + "B"
			return p.UpdateEpisode("e-1", program.EpisodeChanges{Title: &v})
		}},
		{"UpdateEpisode description", "description", func(t *testing.T, s string) error {
			p := mustCreate(t, newProgram)
			if err := p.AddEpisode("e-1", newEpisode); err != nil {
				t.Fatal(err)
			}
			v := "A" + s + "B"
			return p.UpdateEpisode("e-1", program.EpisodeChanges{Description: &v})
		}},
		{"NormalizeEpisodeChanges description", "description", func(t *testing.T, s string) error {
			v := "A" + s + "B"
			_, err := program.NormalizeEpisodeChanges(program.EpisodeChanges{Description: &v})
			return err
		}},
	}
	layout := map[rune]bool{'\t': true, '\n': true, '\r': true}
	for _, e := range entries {
		for name, r := range controls() {
			// Descriptions keep tab, LF and CR; DEL is harmless there too.
			allowed := e.field == "description" && (layout[r] || r == 0x7f)
			t.Run(e.name+"/"+name, func(t *testing.T) {
				t.Parallel()
				var want []string
				if !allowed {
					want = []string{e.field}
				}
				if got := fieldsOf(t, e.apply(t, string(r))); !reflect.DeepEqual(got, want) {
					t.Fatalf("refused fields = %v, want %v", got, want)
				}
			})
		}
	}
}

// TestTitleTrimsLayoutCharactersAtTheEnds: a title is trimmed before it is checked,
// so a trailing newline (common in CSV exports) is removed, not refused; the same
// character inside the title is refused.
func TestTitleTrimsLayoutCharactersAtTheEnds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		title      string
		wantTitle  string
		wantFields []string
	}{
		{"\tShow\r\n", "Show", nil},
		{"Sh\now", "", []string{"title"}},
		{"\x00Show", "", []string{"title"}},
		{"Show\x00", "", []string{"title"}},
		{"Show\u0085", "Show", nil}, // NEL is Unicode white space: trimmed
		{"Sh\u200bow", "Sh\u200bow", nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.title), func(t *testing.T) {
			t.Parallel()
			norm, err := program.NormalizeNewProgram(program.NewProgram{Title: tc.title, Category: "news", Language: "en"})
			if got := fieldsOf(t, err); !reflect.DeepEqual(got, tc.wantFields) {
				t.Fatalf("fields = %v, want %v", got, tc.wantFields)
			}
			if err == nil && norm.Title != tc.wantTitle {
				t.Fatalf("title = %q, want %q", norm.Title, tc.wantTitle)
			}
		})
	}
}

func mustCreate(t *testing.T, in program.NewProgram) *program.Program {
	t.Helper()
	p, err := program.Create("p-1", in)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return p
}
