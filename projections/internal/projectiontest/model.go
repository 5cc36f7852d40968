package projectiontest

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
)

// Program is the expected state of a program row.
type Program struct {
	ID, Title, Description, Category, Language string
	Tags                                       []string
	ExternalID, Status                         string
	PublishedAt                                *time.Time
	CreatedAt, UpdatedAt                       time.Time
	Version                                    int64
	EpisodeCount                               int
}

// Episode is the expected state of an episode row.
type Episode struct {
	ID, ProgramID, Title string
	Number, Season       int
	Description          string
	DurationSeconds      int
	ExternalID, Status   string
	PublishedAt          *time.Time
	Version              int64
}

// Model is the expected read model after a history: what a plain fold of the
// events, each applied once in order, gives.
type Model struct {
	Programs   map[string]Program
	Episodes   map[string]Episode
	Categories map[string]int // published programs per category
}

// Fold computes the Model of evs (a history, each event once, in order).
func Fold(evs []events.Envelope) Model {
	codec := events.NewCodec()
	m := Model{Programs: map[string]Program{}, Episodes: map[string]Episode{}, Categories: map[string]int{}}
	for _, env := range evs {
		ev, err := codec.DecodeEnvelope(env)
		if err != nil {
			continue
		}
		at := env.OccurredAt
		pid := events.ProgramIDOf(ev)
		p := m.Programs[pid]
		touch := func() { p.UpdatedAt, p.Version = at, env.Version }
		setStatus := func(s string) {
			p.Status = s
			if s == "published" && p.PublishedAt == nil {
				p.PublishedAt = &at
			}
			touch()
		}
		switch e := ev.(type) {
		case events.ProgramCreated:
			tags := e.Tags
			if tags == nil {
				tags = []string{}
			}
			p = Program{ID: e.ProgramID, Title: e.Title, Description: e.Description, Category: e.Category, Language: e.Language,
				Tags: tags, ExternalID: e.ExternalID, Status: "draft", CreatedAt: at}
			touch()
		case events.ProgramUpdated:
			set(&p.Title, e.Title)
			set(&p.Description, e.Description)
			set(&p.Category, e.Category)
			set(&p.Language, e.Language)
			if e.Tags != nil {
				p.Tags = append([]string{}, *e.Tags...)
			}
			touch()
		case events.ProgramPublished:
			setStatus("published")
		case events.ProgramUnpublished:
			setStatus("unpublished")
		case events.ProgramArchived:
			setStatus("archived")
		case events.EpisodeAdded:
			season := e.Season
			if season == 0 {
				season = 1
			}
			m.Episodes[e.EpisodeID] = Episode{ID: e.EpisodeID, ProgramID: e.ProgramID, Title: e.Title, Number: e.Number, Season: season,
				Description: e.Description, DurationSeconds: e.DurationSeconds, ExternalID: e.ExternalID, Status: "draft", Version: env.Version}
			touch()
		case events.EpisodeUpdated:
			ep := m.Episodes[e.EpisodeID]
			set(&ep.Title, e.Title)
			set(&ep.Number, e.Number)
			set(&ep.Season, e.Season)
			set(&ep.Description, e.Description)
			set(&ep.DurationSeconds, e.DurationSeconds)
			ep.Version = env.Version
			m.Episodes[e.EpisodeID] = ep
			touch()
		case events.EpisodePublished, events.EpisodeUnpublished, events.EpisodeArchived:
			var id, status string
			switch e := e.(type) {
			case events.EpisodePublished:
				id, status = e.EpisodeID, "published"
			case events.EpisodeUnpublished:
				id, status = e.EpisodeID, "unpublished"
			case events.EpisodeArchived:
				id, status = e.EpisodeID, "archived"
			}
			ep := m.Episodes[id]
			ep.Status, ep.Version = status, env.Version
			if status == "published" && ep.PublishedAt == nil {
				ep.PublishedAt = &at
			}
			m.Episodes[id] = ep
			touch()
		default:
			continue
		}
		m.Programs[pid] = p
	}
	for _, ep := range m.Episodes {
		if ep.Status == "published" {
			p := m.Programs[ep.ProgramID]
			p.EpisodeCount++
			m.Programs[ep.ProgramID] = p
		}
	}
	for _, p := range m.Programs {
		if p.Status == "published" {
			m.Categories[p.Category]++
		}
	}
	return m
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// SortedTags returns tags sorted, for order-insensitive comparisons.
func SortedTags(tags []string) []string {
	out := slices.Clone(tags)
	slices.Sort(out)
	return out
}

// CheckModel compares the rows of programsTable (and, for the catalog, its episodes
// and categories) with Fold(hist), reporting each difference.
func CheckModel(t testing.TB, pool *pgxpool.Pool, hist []events.Envelope, programsTable string, catalog bool) {
	t.Helper()
	want := Fold(hist)
	got := LoadPrograms(t, pool, programsTable, catalog)
	if len(got) != len(want.Programs) {
		t.Errorf("%s holds %d programs, want %d", programsTable, len(got), len(want.Programs))
	}
	for id, w := range want.Programs {
		if !catalog {
			w.EpisodeCount = 0
		}
		if g, ok := got[id]; !ok || !reflect.DeepEqual(g, w) {
			t.Errorf("program %s\n got %+v\nwant %+v", id, g, w)
		}
	}
	if !catalog {
		return
	}
	eps := LoadEpisodes(t, pool)
	if len(eps) != len(want.Episodes) {
		t.Errorf("catalog holds %d episodes, want %d", len(eps), len(want.Episodes))
	}
	for id, w := range want.Episodes {
		if g, ok := eps[id]; !ok || !reflect.DeepEqual(g, w) {
			t.Errorf("episode %s\n got %+v\nwant %+v", id, g, w)
		}
	}
	if cats := LoadCategories(t, pool); !reflect.DeepEqual(cats, want.Categories) {
		t.Errorf("categories = %v, want %v", cats, want.Categories)
	}
}
