package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/internal/streamcheck"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Name and Version identify the projection; the index ("programs_v1") and the
// state table carry the version, so a rebuild writes beside the live ones.
const (
	Name       = "search"
	Version    = 1
	StateTable = "search_state_v1"
)

// Program and episode statuses as the events leave them.
const (
	statusDraft       = "draft"
	statusPublished   = "published"
	statusUnpublished = "unpublished"
	statusArchived    = "archived"
)

// Projection keeps the search index in step with the program streams: one
// document per visible (published) program, with the titles of its visible
// episodes.
//
// Events are deltas (an update carries only what changed), so the projection
// folds each program's stream into a state row in StateTable, in the runtime's
// transaction with the checkpoint, and derives the document from it. An event whose
// stream version is not above the state's has been applied already and is skipped:
// redelivered and stale events change nothing.
//
// The index is written during Apply, before the runtime commits. If the commit
// fails, the batch is applied again from the old state and produces the same
// documents with the same versions, which the index ignores (see Writer): the index
// can be ahead of the state for a moment but never differs from what the state
// will say. A program that is not visible gets a tombstone at its version once it
// has ever been published (so a document written by an attempt that was rolled back
// is removed too); drafts never reach the index.
type Projection struct {
	codec   *events.Codec
	writer  Writer
	index   string
	ensured atomic.Bool
}

var _ runtime.Projection = (*Projection)(nil)

// New returns the search projection writing through writer, decoding with codec
// (nil: events.NewCodec()).
func New(writer Writer, codec *events.Codec) (*Projection, error) {
	if writer == nil {
		return nil, errors.New("search projection: nil writer")
	}
	if codec == nil {
		codec = events.NewCodec()
	}
	return &Projection{codec: codec, writer: writer, index: IndexName(Version)}, nil
}

// Name implements runtime.Projection.
func (*Projection) Name() string { return Name }

// Version implements runtime.Projection.
func (*Projection) Version() int { return Version }

// Sinks implements runtime.Projection: the state table. The search index itself
// lives behind the Writer (a table of the same database for the PostgreSQL
// adapter, a Meilisearch index otherwise) and is named by Index.
func (*Projection) Sinks() []string { return []string{StateTable} }

// Index is the name of the search index this version writes ("programs_v1").
func (p *Projection) Index() string { return p.index }

// Setup creates the index when it does not exist, so searches find an empty index
// before the first event arrives. Apply calls it too.
func (p *Projection) Setup(ctx context.Context) error {
	if p.ensured.Load() {
		return nil
	}
	if err := p.writer.EnsureIndex(ctx, p.index); err != nil {
		return fmt.Errorf("search: ensure index %s: %w", p.index, err)
	}
	p.ensured.Store(true)
	return nil
}

// Apply implements runtime.Projection.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	if err := p.Setup(ctx); err != nil {
		return err
	}
	type item struct {
		env events.Envelope
		ev  events.Event
		pid string
	}
	items := make([]item, 0, len(batch))
	var ids []string
	seen := map[string]bool{}
	for _, env := range batch {
		if !events.IsProgramStreamType(env.Type) {
			continue // other streams (episode pointers, assets) and future types
		}
		ev, err := p.codec.DecodeEnvelope(env)
		if err != nil {
			return runtime.Poison(env, err)
		}
		if err := streamcheck.Check(env, ev); err != nil {
			return runtime.Poison(env, err)
		}
		pid := events.ProgramIDOf(ev)
		items = append(items, item{env: env, ev: ev, pid: pid})
		if !seen[pid] {
			seen[pid] = true
			ids = append(ids, pid)
		}
	}
	if len(items) == 0 {
		return nil
	}
	states, err := loadStates(ctx, tx, ids)
	if err != nil {
		return err
	}
	changed := map[string]bool{}
	var order []string // changed programs in first-change order, for stable writes
	for _, it := range items {
		st := states[it.pid]
		if st != nil && it.env.Version <= st.Version {
			continue // applied before: a redelivery
		}
		if st == nil {
			if _, ok := it.ev.(events.ProgramCreated); !ok {
				return runtime.Poison(it.env, fmt.Errorf("program %s: %s before the program was created", it.pid, it.env.Type))
			}
			st = &programState{}
			states[it.pid] = st
		}
		st.apply(it.ev, it.env.OccurredAt)
		st.Version = it.env.Version
		if !changed[it.pid] {
			changed[it.pid] = true
			order = append(order, it.pid)
		}
	}
	if len(order) == 0 {
		return nil
	}
	if err := saveStates(ctx, tx, order, states); err != nil {
		return err
	}
	var docs []Document
	var tombstones []Tombstone
	for _, id := range order {
		st := states[id]
		switch {
		case st.Status == statusPublished:
			docs = append(docs, st.document(id))
		case st.PublishedAt != nil:
			tombstones = append(tombstones, Tombstone{ID: id, Version: st.Version})
		}
	}
	if len(tombstones) > 0 {
		if err := p.writer.Delete(ctx, p.index, tombstones); err != nil {
			return fmt.Errorf("search: delete %d documents: %w", len(tombstones), err)
		}
	}
	if len(docs) > 0 {
		if err := p.writer.Upsert(ctx, p.index, docs); err != nil {
			return fmt.Errorf("search: upsert %d documents: %w", len(docs), err)
		}
	}
	return nil
}

// programState is a program's stream folded as far as search needs it.
type programState struct {
	Version     int64                    `json:"version"`
	ProgramID   string                   `json:"program_id"`
	Title       string                   `json:"title"`
	Description string                   `json:"description"`
	Category    string                   `json:"category"`
	Language    string                   `json:"language"`
	Tags        []string                 `json:"tags"`
	Status      string                   `json:"status"`
	PublishedAt *time.Time               `json:"published_at,omitempty"`
	Episodes    map[string]*episodeState `json:"episodes,omitempty"`
}

type episodeState struct {
	Title  string `json:"title"`
	Number int    `json:"number"`
	Season int    `json:"season"`
	Status string `json:"status"`
}

// apply folds one event; at is its occurred_at. It mirrors the aggregate's own
// apply: published_at is the first publication, kept by unpublish and republish;
// an episode without a season is in season 1.
func (s *programState) apply(ev events.Event, at time.Time) {
	episode := func(id string) *episodeState {
		if s.Episodes == nil {
			s.Episodes = map[string]*episodeState{}
		}
		e := s.Episodes[id]
		if e == nil { // unknown episode: keep what the event says
			e = &episodeState{Season: 1, Status: statusDraft}
			s.Episodes[id] = e
		}
		return e
	}
	switch e := ev.(type) {
	case events.ProgramCreated:
		*s = programState{
			ProgramID: e.ProgramID, Title: e.Title, Description: e.Description, Category: e.Category,
			Language: e.Language, Tags: slices.Clone(e.Tags), Status: statusDraft,
		}
	case events.ProgramUpdated:
		setIf(&s.Title, e.Title)
		setIf(&s.Description, e.Description)
		setIf(&s.Category, e.Category)
		setIf(&s.Language, e.Language)
		if e.Tags != nil {
			s.Tags = slices.Clone(*e.Tags)
		}
	case events.ProgramPublished:
		s.Status = statusPublished
		if s.PublishedAt == nil {
			t := at.UTC().Truncate(time.Microsecond) // what every store keeps
			s.PublishedAt = &t
		}
	case events.ProgramUnpublished:
		s.Status = statusUnpublished
	case events.ProgramArchived:
		s.Status = statusArchived
	case events.EpisodeAdded:
		ep := episode(e.EpisodeID)
		*ep = episodeState{Title: e.Title, Number: e.Number, Season: max(e.Season, 1), Status: statusDraft}
	case events.EpisodeUpdated:
		ep := episode(e.EpisodeID)
		setIf(&ep.Title, e.Title)
		setIf(&ep.Number, e.Number)
		setIf(&ep.Season, e.Season)
	case events.EpisodePublished:
		episode(e.EpisodeID).Status = statusPublished
	case events.EpisodeUnpublished:
		episode(e.EpisodeID).Status = statusUnpublished
	case events.EpisodeArchived:
		episode(e.EpisodeID).Status = statusArchived
	}
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// document is the search document of a visible program: its published episodes'
// titles in season, number (then id) order.
func (s *programState) document(id string) Document {
	type ep struct {
		id string
		*episodeState
	}
	var eps []ep
	for eid, e := range s.Episodes {
		if e.Status == statusPublished {
			eps = append(eps, ep{eid, e})
		}
	}
	slices.SortFunc(eps, func(a, b ep) int {
		if a.Season != b.Season {
			return a.Season - b.Season
		}
		if a.Number != b.Number {
			return a.Number - b.Number
		}
		return strings.Compare(a.id, b.id)
	})
	titles := make([]string, len(eps))
	for i, e := range eps {
		titles[i] = e.Title
	}
	d := Document{
		ID: id, Title: s.Title, Description: s.Description, Category: s.Category, Language: s.Language,
		Tags: slices.Clone(s.Tags), EpisodeTitles: titles, EpisodeCount: len(titles), Version: s.Version,
	}
	if d.Tags == nil {
		d.Tags = []string{}
	}
	if s.PublishedAt != nil {
		d.PublishedAt = *s.PublishedAt
	}
	return d
}

const (
	sqlLoadStates = `SELECT program_id::text, state FROM search_state_v1 WHERE program_id = ANY($1::uuid[])`
	// The version guard makes a concurrent or repeated save of an older state a no-op.
	sqlSaveStates = `INSERT INTO search_state_v1 AS s (program_id, version, state)
		SELECT u.id::uuid, u.v, u.st::jsonb FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(id, v, st)
		ON CONFLICT (program_id) DO UPDATE SET version = excluded.version, state = excluded.state
		WHERE s.version < excluded.version`
)

func loadStates(ctx context.Context, tx pgx.Tx, ids []string) (map[string]*programState, error) {
	rows, err := tx.Query(ctx, sqlLoadStates, ids)
	if err != nil {
		return nil, fmt.Errorf("search: load program states: %w", err)
	}
	out := make(map[string]*programState, len(ids))
	var (
		id  string
		raw []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &raw}, func() error {
		st := &programState{}
		if err := json.Unmarshal(raw, st); err != nil {
			return fmt.Errorf("program %s: %w", id, err)
		}
		out[id] = st
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("search: load program states: %w", err)
	}
	return out, nil
}

func saveStates(ctx context.Context, tx pgx.Tx, ids []string, states map[string]*programState) error {
	versions := make([]int64, len(ids))
	docs := make([]string, len(ids))
	for i, id := range ids {
		b, err := json.Marshal(states[id])
		if err != nil {
			return fmt.Errorf("search: encode program state %s: %w", id, err)
		}
		versions[i], docs[i] = states[id].Version, string(b)
	}
	if _, err := tx.Exec(ctx, sqlSaveStates, ids, versions, docs); err != nil {
		return fmt.Errorf("search: save %d program states: %w", len(ids), err)
	}
	return nil
}
