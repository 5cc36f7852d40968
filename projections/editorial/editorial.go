// Package editorial is the CMS list read model: every program whatever its status,
// in the shape of GET /v1/cms/programs (without episodes), rebuilt from the program
// streams.
//
// Decisions:
//
//   - version is the program stream's version, moved by every event of the stream
//     (episode events too), so the list shows the version an editor sends in
//     If-Match; updated_at is the time of the stream's last event.
//   - An event whose stream version is not above the row's has been applied and
//     changes nothing, so an event delivered again changes nothing.
//   - A batch is applied set-wise like the catalog's (projections/catalog): one
//     round trip reads the rows the batch names, the events are folded onto them in
//     Go, one guarded upsert ("version < EXCLUDED.version") writes the changed rows
//     from column arrays.
//     The fold relies on the runtime's single writer per projection version.
//   - published_at is the time of the first publication, as in the command side's
//     editorial view; unpublishing, republishing and archiving keep it.
//   - Times come from the events (truncated to PostgreSQL's microseconds), never
//     from the clock, so a rebuild reproduces every row.
package editorial

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/internal/pgarray"
	"github.com/mediamesh/mediamesh/projections/internal/streamcheck"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Name and Version identify the projection; its sink carries the version.
const (
	Name          = "editorial"
	Version       = 1
	ProgramsTable = "editorial_programs_v1"
)

// Projection applies program-stream events to editorial_programs_v1.
type Projection struct {
	codec *events.Codec
}

// New returns the editorial projection decoding with codec (nil: events.NewCodec()).
func New(codec *events.Codec) *Projection {
	if codec == nil {
		codec = events.NewCodec()
	}
	return &Projection{codec: codec}
}

// Name implements runtime.Projection.
func (*Projection) Name() string { return Name }

// Version implements runtime.Projection.
func (*Projection) Version() int { return Version }

// Sinks implements runtime.Projection.
func (*Projection) Sinks() []string { return []string{ProgramsTable} }

// row is an editorial_programs_v1 row as the fold sees it.
type row struct {
	ID          string
	Title       string
	Description string
	Category    string
	Language    string
	Tags        []string
	ExternalID  *string
	Status      string
	PublishedAt *time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Version     int64

	dirty bool
}

const (
	sqlLoad = `SELECT id::text, title, description, category, language, tags, external_id, status, published_at,
		created_at, updated_at, version FROM editorial_programs_v1 WHERE id = ANY($1::uuid[])`
	sqlUpsert = `INSERT INTO editorial_programs_v1 AS t
		(id, title, description, category, language, tags, external_id, status, published_at, created_at, updated_at, version)
		SELECT id, title, description, category, language, tags::text[], external_id, status, published_at, created_at, updated_at, version
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::bigint[])
			AS x(id, title, description, category, language, tags, external_id, status, published_at, created_at, updated_at, version)
		ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, description = EXCLUDED.description, category = EXCLUDED.category,
			language = EXCLUDED.language, tags = EXCLUDED.tags, status = EXCLUDED.status, published_at = EXCLUDED.published_at,
			updated_at = EXCLUDED.updated_at, version = EXCLUDED.version
		WHERE t.version < EXCLUDED.version`
)

// Apply implements runtime.Projection.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	type item struct {
		env events.Envelope
		ev  events.Event
		pid string
	}
	items := make([]item, 0, len(batch))
	var ids []string
	seen := map[string]bool{}
	for _, env := range batch {
		ev, err := p.codec.DecodeEnvelope(env)
		if err != nil {
			return runtime.Poison(env, err)
		}
		if err := streamcheck.Check(env, ev); err != nil {
			return runtime.Poison(env, err)
		}
		if !events.IsProgramStreamType(env.Type) {
			continue // other streams (episode pointers, assets)
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
	rows := make(map[string]*row, len(ids))
	rs, err := tx.Query(ctx, sqlLoad, ids)
	if err != nil {
		return fmt.Errorf("editorial: load rows: %w", err)
	}
	for rs.Next() {
		r := &row{}
		if err := rs.Scan(&r.ID, &r.Title, &r.Description, &r.Category, &r.Language, &r.Tags, &r.ExternalID, &r.Status,
			&r.PublishedAt, &r.CreatedAt, &r.UpdatedAt, &r.Version); err != nil {
			rs.Close()
			return fmt.Errorf("editorial: load rows: %w", err)
		}
		rows[r.ID] = r
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("editorial: load rows: %w", err)
	}
	for _, it := range items {
		apply(rows, it.pid, it.ev, it.env.OccurredAt.UTC().Truncate(time.Microsecond), it.env.Version)
	}
	var changed []*row
	for _, r := range rows {
		if r.dirty {
			changed = append(changed, r)
		}
	}
	if len(changed) == 0 {
		return nil // every event was a redelivery
	}
	slices.SortFunc(changed, func(a, b *row) int { return strings.Compare(a.ID, b.ID) })
	if _, err := tx.Exec(ctx, sqlUpsert, columns(changed)...); err != nil {
		return fmt.Errorf("editorial: write %d rows: %w", len(changed), err)
	}
	return nil
}

// apply folds one event onto the rows, behind the version guard: every event of
// the stream moves version and updated_at.
func apply(rows map[string]*row, pid string, ev events.Event, at time.Time, v int64) {
	if c, ok := ev.(events.ProgramCreated); ok {
		if rows[pid] != nil {
			return
		}
		tags := c.Tags
		if tags == nil {
			tags = []string{}
		}
		var ext *string
		if c.ExternalID != "" {
			ext = &c.ExternalID
		}
		rows[pid] = &row{ID: pid, Title: c.Title, Description: c.Description, Category: c.Category, Language: c.Language, Tags: tags,
			ExternalID: ext, Status: "draft", CreatedAt: at, UpdatedAt: at, Version: v, dirty: true}
		return
	}
	r := rows[pid]
	if r == nil || v <= r.Version {
		return
	}
	r.Version, r.UpdatedAt, r.dirty = v, at, true
	status := func(s string) {
		r.Status = s
		if s == "published" && r.PublishedAt == nil {
			r.PublishedAt = &at
		}
	}
	switch e := ev.(type) {
	case events.ProgramUpdated:
		set(&r.Title, e.Title)
		set(&r.Description, e.Description)
		set(&r.Category, e.Category)
		set(&r.Language, e.Language)
		if e.Tags != nil {
			r.Tags = append([]string{}, *e.Tags...)
		}
	case events.ProgramPublished:
		status("published")
	case events.ProgramUnpublished:
		status("unpublished")
	case events.ProgramArchived:
		status("archived")
	}
}

// columns returns the upsert's column arrays of rows.
func columns(rows []*row) []any {
	n := len(rows)
	ids, titles, descs, cats, langs, tags := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	exts, statuses := make([]pgtype.Text, n), make([]string, n)
	pubs, created, updated, versions := make([]pgtype.Timestamptz, n), make([]time.Time, n), make([]time.Time, n), make([]int64, n)
	for i, r := range rows {
		ids[i], titles[i], descs[i], cats[i], langs[i], tags[i] = r.ID, r.Title, r.Description, r.Category, r.Language, pgarray.TextLiteral(r.Tags)
		statuses[i], created[i], updated[i], versions[i] = r.Status, r.CreatedAt, r.UpdatedAt, r.Version
		if r.ExternalID != nil {
			exts[i] = pgtype.Text{String: *r.ExternalID, Valid: true}
		}
		if r.PublishedAt != nil {
			pubs[i] = pgtype.Timestamptz{Time: *r.PublishedAt, Valid: true}
		}
	}
	return []any{ids, titles, descs, cats, langs, tags, exts, statuses, pubs, created, updated, versions}
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
