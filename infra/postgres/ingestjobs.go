package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/command/ingest"
)

// IngestJobs is command/ingest's JobStore on the tables of migration 00009.
//
// The submission writes the job's row (its cumulative progress, one UPDATE per
// flush); workers only insert item rows keyed by (job_id, item_index) with ON
// CONFLICT DO NOTHING, so an outcome recorded twice counts once and workers never
// wait on each other. GetJob counts the item rows of the job (one index range scan,
// a few milliseconds for 100,000 items).
type IngestJobs struct {
	pool *pgxpool.Pool
}

// NewIngestJobs returns the store on pool; it panics on a nil pool.
func NewIngestJobs(pool *pgxpool.Pool) *IngestJobs {
	if pool == nil {
		panic("postgres: nil pool")
	}
	return &IngestJobs{pool: pool}
}

var _ ingest.JobStore = (*IngestJobs)(nil)

// CreateJob implements ingest.JobStore.
func (s *IngestJobs) CreateJob(ctx context.Context, job ingest.NewJob) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO ingest_jobs (job_id, actor, content_type, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $4)`, job.ID, job.Actor, job.ContentType, job.CreatedAt.UTC())
	if err != nil {
		return fmt.Errorf("create ingest job %s: %w", job.ID, err)
	}
	return nil
}

// insertItemsSQL inserts item rows from arrays; an existing (job_id, item_index)
// row is kept.
const insertItemsSQL = `INSERT INTO ingest_job_items (job_id, item_index, stage, ok, line, external_id, message)
SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::bool[], $5::bigint[], $6::text[], $7::text[])
ON CONFLICT (job_id, item_index) DO NOTHING`

func itemArgs(stage string, items []ingest.ItemOutcome) []any {
	n := len(items)
	jobs, idx, stages, ok, lines, ext, msgs := make([]string, n), make([]int32, n), make([]string, n), make([]bool, n), make([]int64, n), make([]string, n), make([]*string, n)
	for i, o := range items {
		jobs[i], idx[i], stages[i], ok[i], lines[i], ext[i] = o.JobID, int32(o.Index), stage, o.OK, o.Line, storable(o.ExternalID)
		if !o.OK {
			m := storable(o.Message)
			if m == "" {
				m = "failed"
			}
			msgs[i] = &m
		}
	}
	return []any{jobs, idx, stages, ok, lines, ext, msgs}
}

// storable makes s fit a text column: valid UTF-8 without NUL bytes (both come
// straight from feeds, and an outcome that cannot be stored would block the queue).
func storable(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// RecordSubmission implements ingest.JobStore: the rejections and the job's row in
// one transaction.
func (s *IngestJobs) RecordSubmission(ctx context.Context, jobID string, p ingest.Progress, rejected []ingest.ItemOutcome) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if len(rejected) > 0 {
			for i := range rejected {
				rejected[i].JobID, rejected[i].OK = jobID, false
			}
			if _, err := tx.Exec(ctx, insertItemsSQL, itemArgs("validate", rejected)...); err != nil {
				return err
			}
		}
		var line *int64
		var msg *string
		if p.FeedError != nil {
			m := storable(p.FeedError.Message)
			line, msg = &p.FeedError.Line, &m
		}
		tag, err := tx.Exec(ctx, `UPDATE ingest_jobs SET items = $2, enqueued = $3, rejected = $4, submitted = $5,
			feed_error_line = $6, feed_error = $7, updated_at = now() WHERE job_id = $1`,
			jobID, p.Items, p.Enqueued, p.Rejected, p.Done, line, msg)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ingest.ErrJobNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record ingest job %s: %w", jobID, err)
	}
	return nil
}

// RecordOutcomes implements ingest.JobStore with one statement.
func (s *IngestJobs) RecordOutcomes(ctx context.Context, outcomes []ingest.ItemOutcome) error {
	if len(outcomes) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, insertItemsSQL, itemArgs("apply", outcomes)...); err != nil {
		return fmt.Errorf("record %d ingest outcomes: %w", len(outcomes), err)
	}
	return nil
}

// GetJob implements ingest.JobStore. The job row, the counts and the first errors
// are read in one repeatable-read transaction, so they agree with each other.
func (s *IngestJobs) GetJob(ctx context.Context, jobID string) (ingest.JobRecord, error) {
	var rec ingest.JobRecord
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var (
			line    *int64
			msg     *string
			lastAt  *time.Time
			applied int64
			okCount int64
			failed  int64
		)
		err := tx.QueryRow(ctx, `SELECT j.actor, j.content_type, j.items, j.enqueued, j.rejected, j.submitted,
				j.feed_error_line, j.feed_error, j.created_at, j.updated_at, c.applied, c.succeeded, c.failed, c.last_at
			FROM ingest_jobs j, LATERAL (
				SELECT count(*) FILTER (WHERE stage = 'apply') AS applied,
				       count(*) FILTER (WHERE ok) AS succeeded,
				       count(*) FILTER (WHERE stage = 'apply' AND NOT ok) AS failed,
				       max(recorded_at) FILTER (WHERE stage = 'apply') AS last_at
				FROM ingest_job_items WHERE job_id = j.job_id) c
			WHERE j.job_id = $1`, jobID).Scan(
			&rec.Actor, &rec.ContentType, &rec.Items, &rec.Enqueued, &rec.Rejected, &rec.Done,
			&line, &msg, &rec.CreatedAt, &rec.UpdatedAt, &applied, &okCount, &failed, &lastAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return ingest.ErrJobNotFound
		}
		if err != nil {
			return err
		}
		rec.ID = jobID
		rec.Applied, rec.Succeeded, rec.ApplyFailed = int(applied), int(okCount), int(failed)
		if msg != nil {
			rec.FeedError = &ingest.ItemError{Message: *msg}
			if line != nil {
				rec.FeedError.Line = *line
			}
		}
		rec.CreatedAt, rec.UpdatedAt = rec.CreatedAt.UTC(), rec.UpdatedAt.UTC()
		if lastAt != nil {
			rec.LastOutcomeAt = lastAt.UTC()
		}
		rows, err := tx.Query(ctx, `SELECT line, external_id, message FROM ingest_job_items
			WHERE job_id = $1 AND NOT ok ORDER BY item_index LIMIT $2`, jobID, ingest.MaxErrors)
		if err != nil {
			return err
		}
		rec.Errors, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (ingest.ItemError, error) {
			var e ingest.ItemError
			err := row.Scan(&e.Line, &e.ExternalID, &e.Message)
			return e, err
		})
		return err
	})
	if err != nil {
		return ingest.JobRecord{}, fmt.Errorf("get ingest job %s: %w", jobID, err)
	}
	return rec, nil
}
