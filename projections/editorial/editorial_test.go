package editorial_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/editorial"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
)

// TestGoldenHistory checks the editorial row after the golden history by
// hand-written expectations: every event of the stream, episode events included,
// moves version and updated_at, as If-Match needs.
func TestGoldenHistory(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	proj := editorial.New(nil)
	golden := pt.Golden(t)
	sec := func(s int) time.Time { return pt.Base.Add(time.Duration(s) * time.Second) }
	published := sec(3)
	tests := []struct {
		name string
		n    int
		want pt.Program
	}{
		{"created", 1, pt.Program{ID: pt.GoldenProgramID, Title: "Nordic Noir", Description: "Cold cases, colder nights.", Category: "drama",
			Language: "en-GB", Tags: []string{"crime", "nordic"}, ExternalID: "acme-42", Status: "draft", CreatedAt: pt.Base, UpdatedAt: pt.Base, Version: 1}},
		{"episode events move the version", 3, pt.Program{ID: pt.GoldenProgramID, Title: "Nordic Noir", Description: "Cold cases, colder nights.", Category: "drama",
			Language: "en-GB", Tags: []string{"crime", "nordic"}, ExternalID: "acme-42", Status: "draft", CreatedAt: pt.Base, UpdatedAt: sec(2), Version: 2}},
		{"archived", 11, pt.Program{ID: pt.GoldenProgramID, Title: "Nordic Noir (Restored)", Description: "New cut.", Category: "crime",
			Language: "sv", Tags: []string{"crime"}, ExternalID: "acme-42", Status: "archived", PublishedAt: &published, CreatedAt: pt.Base, UpdatedAt: sec(10), Version: 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pt.Truncate(t, pool, proj.Sinks())
			pt.ApplyDirect(t, pool, proj, golden[:tc.n], 1, 4)
			got := pt.LoadPrograms(t, pool, editorial.ProgramsTable, false)
			if len(got) != 1 || !reflect.DeepEqual(got[pt.GoldenProgramID], tc.want) {
				t.Errorf("rows = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestRedeliveryChangesNothing: once, twice and redelivered with duplicates, the
// table ends byte-identical and equal to the reference fold.
func TestRedeliveryChangesNothing(t *testing.T) {
	t.Parallel()
	histories := map[string][]events.Envelope{
		"golden":    pt.Golden(t),
		"generated": pt.Generate(12, 120),
	}
	pool, _ := pgtest.NewDB(t)
	proj := editorial.New(nil)
	for name, hist := range histories {
		t.Run(name, func(t *testing.T) {
			feeds := [][]events.Envelope{hist, append(append([]events.Envelope{}, hist...), hist...), pt.Redeliver(1, hist), pt.Redeliver(2, hist)}
			var want map[string]string
			for i, evs := range feeds {
				pt.Truncate(t, pool, proj.Sinks())
				pt.ApplyDirect(t, pool, proj, evs, uint64(i), 150)
				got := pt.Checksums(t, pool, proj.Sinks())
				if i == 0 {
					want = got
					pt.CheckModel(t, pool, hist, editorial.ProgramsTable, false)
				} else if !reflect.DeepEqual(got, want) {
					t.Errorf("feed %d: sinks differ from a single delivery\n got %v\nwant %v", i, got, want)
				}
			}
		})
	}
}
