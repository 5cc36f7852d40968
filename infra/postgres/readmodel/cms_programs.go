// Package readmodel holds the PostgreSQL adapters of the query side's read-model
// ports, reading the tables the projections write.
package readmodel

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/query/app"
)

// EditorialProgramsTable is the editorial projection's serving table. When a
// rebuild makes a new version serve, the composition root passes its table to
// NewCMSPrograms.
const EditorialProgramsTable = "editorial_programs_v1"

// CMSPrograms implements app.CMSProgramsReadModel on the editorial projection.
type CMSPrograms struct {
	pool  *pgxpool.Pool
	table string
}

// NewCMSPrograms returns the adapter reading table (empty: EditorialProgramsTable)
// through pool (the primary or a read replica).
func NewCMSPrograms(pool *pgxpool.Pool, table string) (*CMSPrograms, error) {
	if pool == nil {
		return nil, errors.New("cms programs read model: nil pool")
	}
	if table == "" {
		table = EditorialProgramsTable
	}
	return &CMSPrograms{pool: pool, table: pgx.Identifier{table}.Sanitize()}, nil
}

// ListCMSPrograms implements app.CMSProgramsReadModel. q matches the title with
// ILIKE (served by the trigram index) or the external id exactly; LIKE wildcards
// in q are matched literally. The total comes from a window count over the same
// filter, and from a separate count only when the page is past the end.
func (c *CMSPrograms) ListCMSPrograms(ctx context.Context, f app.CMSProgramFilter) ([]app.CMSProgramItem, int, error) {
	// Conditions are added only when given, so each combination gets a plan that
	// can use its index (a generic "$1 = '' OR …" plan could not).
	where, args := "TRUE", []any{}
	if f.Status != "" {
		args = append(args, f.Status)
		where += fmt.Sprintf(" AND status = $%d", len(args))
	}
	if f.Q != "" {
		args = append(args, "%"+escapeLike(f.Q)+"%", f.Q)
		where += fmt.Sprintf(" AND (title ILIKE $%d OR external_id = $%d)", len(args)-1, len(args))
	}
	rows, err := c.pool.Query(ctx, fmt.Sprintf(`SELECT id::text, title, description, category, language, tags, COALESCE(external_id, ''),
			status, version, created_at, updated_at, published_at, count(*) OVER ()
		FROM %s WHERE %s
		ORDER BY updated_at DESC, id LIMIT $%d OFFSET $%d`, c.table, where, len(args)+1, len(args)+2), append(args, f.Limit, f.Offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("query %s: %w", c.table, err)
	}
	total := 0
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (app.CMSProgramItem, error) {
		var it app.CMSProgramItem
		var published *time.Time
		err := row.Scan(&it.ID, &it.Title, &it.Description, &it.Category, &it.Language, &it.Tags, &it.ExternalID,
			&it.Status, &it.Version, &it.CreatedAt, &it.UpdatedAt, &published, &total)
		it.CreatedAt, it.UpdatedAt = it.CreatedAt.UTC(), it.UpdatedAt.UTC()
		if published != nil {
			u := published.UTC()
			it.PublishedAt = &u
		}
		if it.Tags == nil {
			it.Tags = []string{}
		}
		return it, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("query %s: %w", c.table, err)
	}
	if len(items) == 0 && f.Offset > 0 {
		if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM `+c.table+` WHERE `+where, args...).Scan(&total); err != nil {
			return nil, 0, fmt.Errorf("count %s: %w", c.table, err)
		}
	}
	return items, total, nil
}

// escapeLike makes q match literally inside a LIKE pattern (default escape "\").
func escapeLike(q string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(q)
}
