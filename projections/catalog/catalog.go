// Package catalog is the discovery read model in PostgreSQL: programs, episodes and
// category counts, rebuilt from the program streams.
//
// Decisions:
//
//   - Every program and episode is kept whatever its status; the status column lets
//     queries show only what is visible (published programs, and published episodes
//     of published programs).
//   - version on a row is the program stream version of the last event applied to it.
//     Inserts do nothing on conflict and updates carry "version < $event_version", so
//     an event delivered again changes nothing. Every event of a program's stream
//     (episode events included) moves the program row's version and updated_at, as
//     it moves the aggregate's.
//   - episode_count (published episodes) and catalog_categories_v1 (published
//     programs per category) are recomputed from the rows for what a batch touched,
//     at the end of the batch in the same transaction, rather than incremented: a
//     recount is exact however often an event is delivered.
//   - published_at is the time of the first publication, as in the command side's
//     editorial view; unpublishing, republishing and archiving keep it.
//   - Times come from the events (occurred_at), never from the clock, so a rebuild
//     reproduces every row.
//   - All statements of a batch are pipelined in one round trip (pgx.Batch) to keep
//     the batch transaction short.
package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/internal/streamcheck"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Name and Version identify the projection; every sink carries the version.
const (
	Name            = "catalog"
	Version         = 1
	ProgramsTable   = "catalog_programs_v1"
	EpisodesTable   = "catalog_episodes_v1"
	CategoriesTable = "catalog_categories_v1"
)

// Projection applies program-stream events to the catalog tables.
type Projection struct {
	codec *events.Codec
}

// New returns the catalog projection decoding with codec (nil: events.NewCodec()).
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
func (*Projection) Sinks() []string { return []string{ProgramsTable, EpisodesTable, CategoriesTable} }

const (
	sqlInsertProgram = `INSERT INTO catalog_programs_v1
		(id, title, description, category, language, tags, external_id, status, created_at, updated_at, version)
		VALUES ($1, $2, $3, $4, $5, COALESCE($6::text[], '{}'), NULLIF($7, ''), 'draft', $8, $8, $9)
		ON CONFLICT (id) DO NOTHING`
	sqlUpdateProgram = `UPDATE catalog_programs_v1 SET
		title = COALESCE($2, title), description = COALESCE($3, description), category = COALESCE($4, category),
		language = COALESCE($5, language), tags = COALESCE($6::text[], tags), updated_at = $7, version = $8
		WHERE id = $1 AND version < $8`
	sqlProgramStatus = `UPDATE catalog_programs_v1 SET status = $2::text,
		published_at = CASE WHEN $2::text = 'published' THEN COALESCE(published_at, $3) ELSE published_at END, updated_at = $3, version = $4
		WHERE id = $1 AND version < $4`
	sqlTouchProgram  = `UPDATE catalog_programs_v1 SET updated_at = $2, version = $3 WHERE id = $1 AND version < $3`
	sqlInsertEpisode = `INSERT INTO catalog_episodes_v1
		(id, program_id, title, number, season, description, duration_seconds, external_id, status, version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, NULLIF($8, ''), 'draft', $9)
		ON CONFLICT (id) DO NOTHING`
	sqlUpdateEpisode = `UPDATE catalog_episodes_v1 SET
		title = COALESCE($3, title), number = COALESCE($4, number), season = COALESCE($5, season),
		description = COALESCE($6, description), duration_seconds = COALESCE($7, duration_seconds), version = $8
		WHERE id = $1 AND program_id = $2 AND version < $8`
	sqlEpisodeStatus = `UPDATE catalog_episodes_v1 SET status = $3::text,
		published_at = CASE WHEN $3::text = 'published' THEN COALESCE(published_at, $4) ELSE published_at END, version = $5
		WHERE id = $1 AND program_id = $2 AND version < $5`
	sqlEpisodeCounts = `UPDATE catalog_programs_v1 p SET episode_count = c.n
		FROM (SELECT ids.id, (SELECT count(*) FROM catalog_episodes_v1 e WHERE e.program_id = ids.id AND e.status = 'published')::int AS n
		      FROM unnest($1::uuid[]) AS ids(id)) c
		WHERE p.id = c.id AND p.episode_count <> c.n`
	sqlCategoriesBefore = `SELECT DISTINCT category FROM catalog_programs_v1 WHERE id = ANY($1::uuid[])`
	sqlCategoryCounts   = `WITH affected AS (
		    SELECT slug FROM unnest($1::text[]) AS s(slug)
		    UNION
		    SELECT category FROM catalog_programs_v1 WHERE id = ANY($2::uuid[])
		), counts AS (
		    SELECT a.slug, (SELECT count(*) FROM catalog_programs_v1 p WHERE p.category = a.slug AND p.status = 'published')::int AS n
		    FROM affected a
		), removed AS (
		    DELETE FROM catalog_categories_v1 c USING counts WHERE c.slug = counts.slug AND counts.n = 0
		)
		INSERT INTO catalog_categories_v1 (slug, program_count)
		SELECT slug, n FROM counts WHERE n > 0
		ON CONFLICT (slug) DO UPDATE SET program_count = EXCLUDED.program_count
		WHERE catalog_categories_v1.program_count <> EXCLUDED.program_count`
)

// Apply implements runtime.Projection.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	b := &pgx.Batch{}
	var (
		categoryPrograms []string // programs whose category or status may have changed
		movedPrograms    []string // programs whose category may have changed
		episodePrograms  []string // programs whose episodes' status may have changed
	)
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
			categoryPrograms = append(categoryPrograms, e.ProgramID)
		case events.ProgramUpdated:
			b.Queue(sqlUpdateProgram, e.ProgramID, e.Title, e.Description, e.Category, e.Language, tagsArg(e.Tags), at, v)
			if e.Category != nil {
				categoryPrograms = append(categoryPrograms, e.ProgramID)
				movedPrograms = append(movedPrograms, e.ProgramID)
			}
		case events.ProgramPublished:
			b.Queue(sqlProgramStatus, e.ProgramID, "published", at, v)
			categoryPrograms = append(categoryPrograms, e.ProgramID)
		case events.ProgramUnpublished:
			b.Queue(sqlProgramStatus, e.ProgramID, "unpublished", at, v)
			categoryPrograms = append(categoryPrograms, e.ProgramID)
		case events.ProgramArchived:
			b.Queue(sqlProgramStatus, e.ProgramID, "archived", at, v)
			categoryPrograms = append(categoryPrograms, e.ProgramID)
		case events.EpisodeAdded:
			season := e.Season
			if season == 0 {
				season = 1
			}
			b.Queue(sqlInsertEpisode, e.EpisodeID, e.ProgramID, e.Title, e.Number, season, e.Description, e.DurationSeconds, e.ExternalID, v)
			b.Queue(sqlTouchProgram, e.ProgramID, at, v)
		case events.EpisodeUpdated:
			b.Queue(sqlUpdateEpisode, e.EpisodeID, e.ProgramID, e.Title, e.Number, e.Season, e.Description, e.DurationSeconds, v)
			b.Queue(sqlTouchProgram, e.ProgramID, at, v)
		case events.EpisodePublished:
			b.Queue(sqlEpisodeStatus, e.EpisodeID, e.ProgramID, "published", at, v)
			b.Queue(sqlTouchProgram, e.ProgramID, at, v)
			episodePrograms = append(episodePrograms, e.ProgramID)
		case events.EpisodeUnpublished:
			b.Queue(sqlEpisodeStatus, e.EpisodeID, e.ProgramID, "unpublished", at, v)
			b.Queue(sqlTouchProgram, e.ProgramID, at, v)
			episodePrograms = append(episodePrograms, e.ProgramID)
		case events.EpisodeArchived:
			b.Queue(sqlEpisodeStatus, e.EpisodeID, e.ProgramID, "archived", at, v)
			b.Queue(sqlTouchProgram, e.ProgramID, at, v)
			episodePrograms = append(episodePrograms, e.ProgramID)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	before := []string{}
	if len(movedPrograms) > 0 {
		rows, err := tx.Query(ctx, sqlCategoriesBefore, movedPrograms)
		if err != nil {
			return fmt.Errorf("catalog: categories before batch: %w", err)
		}
		before, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("catalog: categories before batch: %w", err)
		}
	}
	if len(episodePrograms) > 0 {
		b.Queue(sqlEpisodeCounts, episodePrograms)
	}
	if len(categoryPrograms) > 0 {
		b.Queue(sqlCategoryCounts, before, categoryPrograms)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("catalog: apply %d events: %w", len(batch), err)
	}
	return nil
}

// tagsArg turns an optional tag list into a text[] argument: NULL when absent,
// '{}' (never NULL) when present and empty.
func tagsArg(tags *[]string) any {
	if tags == nil {
		return nil
	}
	if *tags == nil {
		return []string{}
	}
	return *tags
}
