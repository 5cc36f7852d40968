package catalog_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/catalog"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

func at(sec int) *time.Time {
	t := pt.Base.Add(time.Duration(sec) * time.Second)
	return &t
}

// TestGoldenHistory applies prefixes of the golden history and checks the rows by
// hand-written expectations (not by the reference fold), including the visible
// counts on publish, unpublish and archive of programs and episodes.
func TestGoldenHistory(t *testing.T) {
	t.Parallel()
	golden := pt.Golden(t)
	const ep = "0190d5a0-0000-7000-8000-0000000000e1"
	tests := []struct {
		name       string
		n          int // golden events applied
		status     string
		title      string
		category   string
		version    int64
		published  *time.Time
		updated    time.Time
		epStatus   string
		epCount    int
		categories map[string]int
	}{
		{"created", 1, "draft", "Nordic Noir", "drama", 1, nil, *at(0), "", 0, map[string]int{}},
		{"episode added", 3, "draft", "Nordic Noir", "drama", 2, nil, *at(2), "draft", 0, map[string]int{}},
		{"program published", 4, "published", "Nordic Noir", "drama", 3, at(3), *at(3), "draft", 0, map[string]int{"drama": 1}},
		{"episode published", 6, "published", "Nordic Noir", "drama", 5, at(3), *at(5), "published", 1, map[string]int{"drama": 1}},
		{"category changed", 7, "published", "Nordic Noir (Restored)", "crime", 6, at(3), *at(6), "published", 1, map[string]int{"crime": 1}},
		{"episode unpublished", 8, "published", "Nordic Noir (Restored)", "crime", 7, at(3), *at(7), "unpublished", 0, map[string]int{"crime": 1}},
		{"program unpublished", 9, "unpublished", "Nordic Noir (Restored)", "crime", 8, at(3), *at(8), "unpublished", 0, map[string]int{}},
		{"archived", 11, "archived", "Nordic Noir (Restored)", "crime", 10, at(3), *at(10), "archived", 0, map[string]int{}},
	}
	pool, _ := pgtest.NewDB(t)
	proj := catalog.New(nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt.Truncate(t, pool, proj.Sinks())
			pt.ApplyDirect(t, pool, proj, golden[:tc.n], 1, 3)
			progs := pt.LoadPrograms(t, pool, catalog.ProgramsTable, true)
			p, ok := progs[pt.GoldenProgramID]
			if len(progs) != 1 || !ok {
				t.Fatalf("programs = %v, want the golden one", progs)
			}
			if p.Status != tc.status || p.Title != tc.title || p.Category != tc.category || p.Version != tc.version ||
				!reflect.DeepEqual(p.PublishedAt, tc.published) || !p.UpdatedAt.Equal(tc.updated) || !p.CreatedAt.Equal(pt.Base) ||
				p.EpisodeCount != tc.epCount || p.ExternalID != "acme-42" {
				t.Errorf("program = %+v\nwant status %s title %q category %s version %d published %v updated %v episodes %d",
					p, tc.status, tc.title, tc.category, tc.version, tc.published, tc.updated, tc.epCount)
			}
			eps := pt.LoadEpisodes(t, pool)
			if got := eps[ep].Status; got != tc.epStatus {
				t.Errorf("episode status = %q, want %q", got, tc.epStatus)
			}
			if got := pt.LoadCategories(t, pool); !reflect.DeepEqual(got, tc.categories) {
				t.Errorf("categories = %v, want %v", got, tc.categories)
			}
		})
	}

	t.Run("final rows", func(t *testing.T) {
		pt.Truncate(t, pool, proj.Sinks())
		pt.ApplyDirect(t, pool, catalog.New(nil), golden, 2, 4)
		p := pt.LoadPrograms(t, pool, catalog.ProgramsTable, true)[pt.GoldenProgramID]
		wantP := pt.Program{ID: pt.GoldenProgramID, Title: "Nordic Noir (Restored)", Description: "New cut.", Category: "crime",
			Language: "sv", Tags: []string{"crime"}, ExternalID: "acme-42", Status: "archived", PublishedAt: at(3),
			CreatedAt: pt.Base, UpdatedAt: *at(10), Version: 10}
		if !reflect.DeepEqual(p, wantP) {
			t.Errorf("program\n got %+v\nwant %+v", p, wantP)
		}
		e := pt.LoadEpisodes(t, pool)[ep]
		wantE := pt.Episode{ID: ep, ProgramID: pt.GoldenProgramID, Title: "Pilot (Director's Cut)", Number: 2, Season: 3,
			Description: "Longer.", DurationSeconds: 3600, ExternalID: "acme-42-e1", Status: "archived", PublishedAt: at(5), Version: 9}
		if !reflect.DeepEqual(e, wantE) {
			t.Errorf("episode\n got %+v\nwant %+v", e, wantE)
		}
	})
}

// TestRedeliveryChangesNothing feeds the golden history and a generated one once,
// twice, and as an at-least-once transport would (per-stream order kept, rewinds
// and duplicates, other interleavings, other batch sizes): every sink must end
// byte-identical, and equal to the reference fold of the history.
func TestRedeliveryChangesNothing(t *testing.T) {
	t.Parallel()
	histories := map[string][]events.Envelope{
		"golden":             pt.Golden(t),
		"golden with assets": append(pt.Golden(t), pt.GoldenAssets(t)...),
		"generated":          pt.Generate(11, 120),
	}
	for name, hist := range histories {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			feeds := []struct {
				name string
				evs  []events.Envelope
			}{
				{"once", hist},
				{"twice", append(append([]events.Envelope{}, hist...), hist...)},
				{"redelivered", pt.Redeliver(5, hist)},
				{"redelivered other seed", pt.Redeliver(6, hist)},
			}
			var want map[string]string
			pool, _ := pgtest.NewDB(t)
			proj := catalog.New(nil)
			for i, f := range feeds {
				pt.Truncate(t, pool, proj.Sinks())
				pt.ApplyDirect(t, pool, proj, f.evs, uint64(i), 200)
				got := pt.Checksums(t, pool, proj.Sinks())
				if i == 0 {
					want = got
					pt.CheckModel(t, pool, hist, catalog.ProgramsTable, true)
					continue
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("feed %q: sinks differ from a single delivery\n got %v\nwant %v", f.name, got, want)
				}
			}
		})
	}
}

// TestPoisonEvents: what cannot be applied is reported as poison, never retried
// blindly, and never half-applied.
func TestPoisonEvents(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	good := pt.Golden(t)[0]
	tests := []struct {
		name string
		env  events.Envelope
	}{
		{"undecodable data", func() events.Envelope { e := good; e.Data = []byte(`{"program_id": 7}`); return e }()},
		{"unknown type", func() events.Envelope { e := good; e.Type = "mediamesh.program.renamed.v9"; return e }()},
		{"wrong stream", func() events.Envelope { e := good; e.StreamID = "program-other"; return e }()},
		{"program id not a uuid", func() events.Envelope {
			e := good
			e.StreamID = "program-x"
			e.Data = pt.MustJSON(events.ProgramCreated{ProgramID: "x", Title: "t", Category: "c", Language: "en"})
			return e
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
				return catalog.New(nil).Apply(context.Background(), tx, []events.Envelope{tc.env})
			})
			var pe *runtime.PoisonError
			if !errors.As(err, &pe) || pe.Position != tc.env.Position {
				t.Fatalf("Apply = %v, want a PoisonError for position %d", err, tc.env.Position)
			}
		})
	}
	if n := len(pt.LoadPrograms(t, pool, catalog.ProgramsTable, true)); n != 0 {
		t.Fatalf("%d programs written by poison events", n)
	}
}
