package search_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
)

// fixture is a fresh database with the PostgreSQL search adapter and the projection.
type fixture struct {
	pool *pgxpool.Pool
	idx  *searchpg.Index
	proj *search.Projection
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	idx, err := searchpg.New(pool)
	if err != nil {
		t.Fatal(err)
	}
	proj, err := search.New(idx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{pool: pool, idx: idx, proj: proj}
}

func (f fixture) documents(t *testing.T) []search.Document {
	t.Helper()
	docs, err := f.idx.Documents(context.Background(), f.proj.Index())
	if err != nil {
		t.Fatalf("documents: %v", err)
	}
	return normalize(docs)
}

// normalize makes nil and empty slices equal.
func normalize(docs []search.Document) []search.Document {
	out := []search.Document{}
	for _, d := range docs {
		if len(d.Tags) == 0 {
			d.Tags = nil
		}
		if len(d.EpisodeTitles) == 0 {
			d.EpisodeTitles = nil
		}
		out = append(out, d)
	}
	return out
}

func at(sec int) time.Time { return pt.Base.Add(time.Duration(sec) * time.Second) }

func TestNewRejectsNilWriter(t *testing.T) {
	t.Parallel()
	if _, err := search.New(nil, nil); err == nil {
		t.Fatal("New(nil) succeeded, want an error")
	}
}

// TestGoldenHistory applies prefixes of the golden history (events/testdata) and
// checks the index against hand-written documents: visible only while published,
// episode titles only of published episodes, the version of the last event.
func TestGoldenHistory(t *testing.T) {
	t.Parallel()
	golden := pt.Golden(t)
	const id = pt.GoldenProgramID
	restored := search.Document{
		ID: id, Title: "Nordic Noir (Restored)", Description: "New cut.", Category: "crime", Language: "sv",
		Tags: []string{"crime"}, PublishedAt: at(3),
	}
	original := search.Document{
		ID: id, Title: "Nordic Noir", Description: "Cold cases, colder nights.", Category: "drama", Language: "en-GB",
		Tags: []string{"crime", "nordic"}, PublishedAt: at(3),
	}
	with := func(d search.Document, version int64, episodes ...string) search.Document {
		d.Version, d.EpisodeTitles, d.EpisodeCount = version, episodes, len(episodes)
		return d
	}
	tests := []struct {
		name string
		n    int // golden events applied (the episode pointer event is the second)
		want []search.Document
	}{
		{"created: a draft is not indexed", 1, nil},
		{"episode added to a draft", 3, nil},
		{"published", 4, []search.Document{with(original, 3)}},
		{"draft episode updated", 5, []search.Document{with(original, 4)}},
		{"episode published", 6, []search.Document{with(original, 5, "Pilot (Director's Cut)")}},
		{"program updated", 7, []search.Document{with(restored, 6, "Pilot (Director's Cut)")}},
		{"episode unpublished", 8, []search.Document{with(restored, 7)}},
		{"program unpublished", 9, nil},
		{"archived", 11, nil},
	}
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if err := f.idx.DropIndex(ctx, f.proj.Index()); err != nil {
				t.Fatal(err)
			}
			if err := f.idx.EnsureIndex(ctx, f.proj.Index()); err != nil {
				t.Fatal(err)
			}
			pt.Truncate(t, f.pool, f.proj.Sinks())
			pt.ApplyDirect(t, f.pool, f.proj, golden[:tc.n], 1, 3)
			if got, want := f.documents(t), normalize(tc.want); !reflect.DeepEqual(got, want) {
				t.Fatalf("documents after %d events:\n got  %+v\n want %+v", tc.n, got, want)
			}
			// The same prefix again, in other batches, changes nothing.
			pt.ApplyDirect(t, f.pool, f.proj, golden[:tc.n], 2, 5)
			if got, want := f.documents(t), normalize(tc.want); !reflect.DeepEqual(got, want) {
				t.Fatalf("documents after a redelivery:\n got  %+v\n want %+v", got, want)
			}
		})
	}
}

// expected derives the documents of a history from the shared reference fold
// (projectiontest.Fold), independently of the projection's own state.
func expected(hist []events.Envelope) []search.Document {
	m := pt.Fold(hist)
	var out []search.Document
	for _, p := range m.Programs {
		if p.Status != "published" {
			continue
		}
		type ep struct {
			id, title      string
			season, number int
		}
		var eps []ep
		for _, e := range m.Episodes {
			if e.ProgramID == p.ID && e.Status == "published" {
				eps = append(eps, ep{e.ID, e.Title, e.Season, e.Number})
			}
		}
		slices.SortFunc(eps, func(a, b ep) int {
			if a.season != b.season {
				return a.season - b.season
			}
			if a.number != b.number {
				return a.number - b.number
			}
			return strings.Compare(a.id, b.id)
		})
		d := search.Document{
			ID: p.ID, Title: p.Title, Description: p.Description, Category: p.Category, Language: p.Language,
			Tags: p.Tags, EpisodeCount: len(eps), Version: p.Version,
		}
		for _, e := range eps {
			d.EpisodeTitles = append(d.EpisodeTitles, e.title)
		}
		if p.PublishedAt != nil {
			d.PublishedAt = p.PublishedAt.UTC()
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b search.Document) int { return strings.Compare(a.ID, b.ID) })
	return normalize(out)
}

// TestDeliveries feeds one generated history once, twice, and as shuffled
// at-least-once redeliveries (rewinds and stale duplicates, streams interleaved
// differently), each into its own database: the index must be the same every
// time, and equal to the reference fold.
func TestDeliveries(t *testing.T) {
	t.Parallel()
	hist := pt.Generate(11, 60)
	want := expected(hist)
	if len(want) < 5 {
		t.Fatalf("the generated history publishes only %d programs; pick another seed", len(want))
	}
	tests := []struct {
		name string
		feed []events.Envelope
	}{
		{"once", hist},
		{"twice", append(slices.Clone(hist), hist...)},
		{"redelivered", pt.Redeliver(5, hist)},
		{"redelivered again", pt.Redeliver(6, append(slices.Clone(hist), hist...))},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			pt.ApplyDirect(t, f.pool, f.proj, tc.feed, uint64(i), 50)
			if got := f.documents(t); !reflect.DeepEqual(got, want) {
				t.Fatalf("index differs from the reference fold:\n got  %d %+v\n want %d %+v", len(got), got, len(want), want)
			}
		})
	}
}

// TestPoison: an event of a program whose creation the projection never saw cannot
// be applied; the projection says so, for the runtime to dead-letter it.
func TestPoison(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	golden := pt.Golden(t)
	published := golden[3] // mediamesh.program.published.v1, without its creation
	bad := golden[0]
	bad.Data = []byte(`{"program_id": 42}`)
	for _, env := range []events.Envelope{published, bad} {
		err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
			return f.proj.Apply(context.Background(), tx, []events.Envelope{env})
		})
		var pe *runtime.PoisonError
		if !errors.As(err, &pe) || pe.Position != env.Position {
			t.Errorf("%s: %v, want a PoisonError at position %d", env.Type, err, env.Position)
		}
	}
}

// TestThroughRuntime runs the projection in the projection runtime, from an
// in-memory event log, and searches the result.
func TestThroughRuntime(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	hist := pt.Generate(23, 40)
	src := pt.NewSource(hist[:len(hist)/2]...)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := runtime.New(f.pool, src, []runtime.Projection{f.proj}, runtime.Options{BatchSize: 16, BatchWait: time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	waiter, err := runtime.NewWaiter(f.pool, quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{rt.Run, waiter.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				t.Errorf("run: %v", err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	if err := f.proj.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	wait := func(pos int64) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if err := waiter.WaitForPosition(wctx, search.Name, pos); err != nil {
			t.Fatalf("the projection never reached position %d: %v", pos, err)
		}
	}
	wait(hist[len(hist)/2-1].Position)
	if got, want := f.documents(t), expected(hist[:len(hist)/2]); !reflect.DeepEqual(got, want) {
		t.Fatalf("after half the history:\n got  %+v\n want %+v", got, want)
	}
	src.Append(hist[len(hist)/2:]...)
	wait(hist[len(hist)-1].Position)
	want := expected(hist)
	if got := f.documents(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the whole history:\n got  %+v\n want %+v", got, want)
	}
	// Every visible program is found by its title.
	for _, d := range want {
		res, err := f.idx.Search(ctx, f.proj.Index(), search.Query{Text: d.Title, Limit: search.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(res.IDs, d.ID) {
			t.Errorf("search %q: %v does not contain %s", d.Title, res.IDs, d.ID)
		}
	}
}
