// Package editorial is the CMS list read model: every program whatever its status,
// in the shape of GET /v1/cms/programs (without episodes), rebuilt from the program
// streams.
//
// Decisions:
//
//   - version is the program stream's version, moved by every event of the stream
//     (episode events too), so the list shows the version an editor sends in
//     If-Match; updated_at is the time of the stream's last event.
//   - Inserts do nothing on conflict and updates carry "version < $event_version",
//     so an event delivered again changes nothing.
//   - published_at is the time of the first publication, as in the command side's
//     editorial view; unpublishing, republishing and archiving keep it.
//   - Times come from the events, never from the clock, so a rebuild reproduces
//     every row; statements of a batch are pipelined in one round trip.
package editorial

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/events"
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

const (
	sqlInsertProgram = `INSERT INTO editorial_programs_v1
		(id, title, description, category, language, tags, external_id, status, created_at, updated_at, version)
		VALUES ($1, $2, $3, $4, $5, COALESCE($6::text[], '{}'), NULLIF($7, ''), 'draft', $8, $8, $9)
		ON CONFLICT (id) DO NOTHING`
	sqlUpdateProgram = `UPDATE editorial_programs_v1 SET
		title = COALESCE($2, title), description = COALESCE($3, description), category = COALESCE($4, category),
		language = COALESCE($5, language), tags = COALESCE($6::text[], tags), updated_at = $7, version = $8
		WHERE id = $1 AND version < $8`
	sqlProgramStatus = `UPDATE editorial_programs_v1 SET status = $2::text,
		published_at = CASE WHEN $2::text = 'published' THEN COALESCE(published_at, $3) ELSE published_at END, updated_at = $3, version = $4
		WHERE id = $1 AND version < $4`
	sqlTouchProgram = `UPDATE editorial_programs_v1 SET updated_at = $2, version = $3 WHERE id = $1 AND version < $3`
)

// Apply implements runtime.Projection.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	b := &pgx.Batch{}
	for _, env := range batch {
		ev, err := p.codec.DecodeEnvelope(env)
		if err != nil {
			return runtime.Poison(env, err)
		}
		if err := streamcheck.Check(env, ev); err != nil {
			return runtime.Poison(env, err)
		}
		at, v := env.OccurredAt, env.Version
		switch e := ev.(type) {
		case events.ProgramCreated:
			b.Queue(sqlInsertProgram, e.ProgramID, e.Title, e.Description, e.Category, e.Language, e.Tags, e.ExternalID, at, v)
		case events.ProgramUpdated:
			var tags any
			if e.Tags != nil {
				tags = append([]string{}, *e.Tags...)
			}
			b.Queue(sqlUpdateProgram, e.ProgramID, e.Title, e.Description, e.Category, e.Language, tags, at, v)
		case events.ProgramPublished:
			b.Queue(sqlProgramStatus, e.ProgramID, "published", at, v)
		case events.ProgramUnpublished:
			b.Queue(sqlProgramStatus, e.ProgramID, "unpublished", at, v)
		case events.ProgramArchived:
			b.Queue(sqlProgramStatus, e.ProgramID, "archived", at, v)
		case events.EpisodeAdded:
			b.Queue(sqlTouchProgram, e.ProgramID, at, v)
		case events.EpisodeUpdated:
			b.Queue(sqlTouchProgram, e.ProgramID, at, v)
		case events.EpisodePublished:
			b.Queue(sqlTouchProgram, e.ProgramID, at, v)
		case events.EpisodeUnpublished:
			b.Queue(sqlTouchProgram, e.ProgramID, at, v)
		case events.EpisodeArchived:
			b.Queue(sqlTouchProgram, e.ProgramID, at, v)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("editorial: apply %d events: %w", len(batch), err)
	}
	return nil
}
