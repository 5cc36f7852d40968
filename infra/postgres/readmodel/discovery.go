package readmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/query/app"
)

// Catalog projection sinks read by discovery (projections/catalog, version 1). A
// rebuild that makes another version serve passes its tables in CatalogTables.
const (
	CatalogProgramsTable   = "catalog_programs_v1"
	CatalogEpisodesTable   = "catalog_episodes_v1"
	CatalogCategoriesTable = "catalog_categories_v1"
)

// CatalogTables names the catalog projection and its tables; empty fields take the
// version 1 names.
type CatalogTables struct {
	Projection string
	Programs   string
	Episodes   string
	Categories string
}

// Catalog implements the discovery read models of query/app on the catalog
// projection's PostgreSQL tables, through a Router (replicas, then the primary).
//
// Every statement reads the data and the projection's checkpoint together (one
// statement, one snapshot), so the answer carries the exact position it reflects
// and, for a consistency token, whether it includes the write: the catalog row of
// the token's program must have at least the token's stream version, or for a
// write on another stream the checkpoint must have reached its position.
type Catalog struct {
	r                                *Router
	projection                       string
	programs, episodes, categories   string
	pCols                            string
	posExpr                          string
	byIDSQL, programsSQL, episodeSQL string
	episodesSQL, categoriesSQL       string
}

// NewCatalog returns the adapter.
func NewCatalog(r *Router, t CatalogTables) (*Catalog, error) {
	if r == nil {
		return nil, errors.New("catalog read model: nil router")
	}
	if t.Projection == "" {
		t.Projection = app.ProjectionCatalog
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&t.Programs, CatalogProgramsTable)
	def(&t.Episodes, CatalogEpisodesTable)
	def(&t.Categories, CatalogCategoriesTable)
	c := &Catalog{
		r: r, projection: t.Projection,
		programs:   pgx.Identifier{t.Programs}.Sanitize(),
		episodes:   pgx.Identifier{t.Episodes}.Sanitize(),
		categories: pgx.Identifier{t.Categories}.Sanitize(),
	}
	// $1 is always the projection name.
	c.posExpr = `COALESCE((SELECT position FROM projection_checkpoints WHERE name = $1 AND serving), 0)`
	c.pCols = `p.id::text, p.title, p.description, p.category, p.language, p.tags, p.published_at, p.episode_count, p.images::text, p.version`
	c.byIDSQL = `SELECT m.pos, m.ok, COALESCE(p.version, 0), COALESCE(p.status = 'published', false), ` + nullableProgramCols + `
		FROM (SELECT %s AS pos, %s AS ok) m LEFT JOIN ` + c.programs + ` p ON p.id = $2::uuid`
	c.programsSQL = `SELECT m.pos, m.ok, ` + nullableProgramCols + `
		FROM (SELECT %s AS pos, %s AS ok) m LEFT JOIN ` + c.programs + ` p ON p.id = ANY($2::uuid[]) AND p.status = 'published'`
	c.episodesSQL = `SELECT m.pos, m.ok, COALESCE(p.status = 'published', false), ` + nullableEpisodeCols + `
		FROM (SELECT %s AS pos, %s AS ok) m
		LEFT JOIN ` + c.programs + ` p ON p.id = $2::uuid
		LEFT JOIN ` + c.episodes + ` e ON e.program_id = p.id AND e.status = 'published' AND p.status = 'published'
		ORDER BY e.season, e.number, e.id`
	c.episodeSQL = `SELECT m.pos, m.ok, COALESCE(e.program_id::text, ''), COALESCE(e.status = 'published' AND p.status = 'published', false), ` + nullableEpisodeCols + `
		FROM (SELECT %s AS pos, %s AS ok) m
		LEFT JOIN ` + c.episodes + ` e ON e.id = $2::uuid
		LEFT JOIN ` + c.programs + ` p ON p.id = e.program_id`
	c.categoriesSQL = `SELECT m.pos, m.ok, c.slug, c.program_count
		FROM (SELECT %s AS pos, %s AS ok) m LEFT JOIN ` + c.categories + ` c ON true
		ORDER BY c.slug`
	return c, nil
}

// nullableProgramCols and nullableEpisodeCols read a row of a LEFT JOIN that may
// be all NULL (nothing matched): text and numbers are coalesced, the rest scans
// into pointers.
const (
	nullableProgramCols = `COALESCE(p.id::text, ''), COALESCE(p.title, ''), COALESCE(p.description, ''), COALESCE(p.category, ''),
		COALESCE(p.language, ''), p.tags, p.published_at, COALESCE(p.episode_count, 0), p.images::text, COALESCE(p.version, 0)`
	nullableEpisodeCols = `COALESCE(e.id::text, ''), COALESCE(e.program_id::text, ''), COALESCE(e.title, ''), COALESCE(e.number, 0),
		COALESCE(e.season, 0), COALESCE(e.description, ''), COALESCE(e.duration_seconds, 0), e.published_at, e.images::text`
)

// check returns the SQL of the statement's meta row (position, includes) for a
// read that must include after, and appends its arguments to args (after $1, the
// projection name, and the statement's own $2).
func (c *Catalog) check(sql string, after *app.WritePoint, args []any) (string, []any) {
	ok := "true"
	if after != nil {
		if pid := after.ProgramID(); pid != "" {
			args = append(args, pid, after.Version)
			ok = fmt.Sprintf(`COALESCE((SELECT version FROM %s WHERE id = $%d::uuid), 0) >= $%d`, c.programs, len(args)-1, len(args))
		} else {
			args = append(args, after.Position)
			ok = fmt.Sprintf(`%s >= $%d`, c.posExpr, len(args))
		}
	}
	return fmt.Sprintf(sql, c.posExpr, ok), args
}

func snapshot(pos int64, ok bool) app.Snapshot {
	return app.Snapshot{Source: app.SourcePostgres, Position: pos, Includes: ok}
}

// scanner is a row being scanned (pgx.Row, pgx.Rows).
type scanner interface{ Scan(dest ...any) error }

// scanProgram scans the program columns after the given leading destinations.
func scanProgram(row scanner, lead ...any) (app.Program, error) {
	var (
		p      app.Program
		images *string
	)
	dest := append(lead, &p.ID, &p.Title, &p.Description, &p.Category, &p.Language, &p.Tags, &p.PublishedAt,
		&p.EpisodeCount, &images, &p.Version)
	if err := row.Scan(dest...); err != nil {
		return app.Program{}, err
	}
	if p.Tags == nil {
		p.Tags = []string{}
	}
	if p.PublishedAt != nil {
		u := p.PublishedAt.UTC()
		p.PublishedAt = &u
	}
	var err error
	p.Images, err = decodeImages(images)
	return p, err
}

func scanEpisode(row scanner, lead ...any) (app.Episode, error) {
	var (
		e      app.Episode
		images *string
	)
	dest := append(lead, &e.ID, &e.ProgramID, &e.Title, &e.Number, &e.Season, &e.Description, &e.DurationSeconds,
		&e.PublishedAt, &images)
	if err := row.Scan(dest...); err != nil {
		return app.Episode{}, err
	}
	if e.PublishedAt != nil {
		u := e.PublishedAt.UTC()
		e.PublishedAt = &u
	}
	var err error
	e.Images, err = decodeImages(images)
	return e, err
}

// decodeImages reads the images column; unknown kinds and fields are ignored, so
// the asset projection may store more than discovery shows.
func decodeImages(s *string) (app.Images, error) {
	var im app.Images
	if s == nil || *s == "" || *s == "{}" {
		return im, nil
	}
	if err := json.Unmarshal([]byte(*s), &im); err != nil {
		return app.Images{}, fmt.Errorf("decode images: %w", err)
	}
	return im, nil
}

// Program implements app.ProgramReadModel.
func (c *Catalog) Program(ctx context.Context, id string, after *app.WritePoint) (*app.Program, int64, app.Snapshot, error) {
	type result struct {
		p       *app.Program
		version int64
	}
	res, snap, err := routed(ctx, c.r, func(ctx context.Context, db *pgxpool.Pool) (result, app.Snapshot, error) {
		sql, args := c.check(c.byIDSQL, after, []any{c.projection, id})
		var (
			pos     int64
			ok      bool
			version int64
			visible bool
		)
		p, err := scanProgram(db.QueryRow(ctx, sql, args...), &pos, &ok, &version, &visible)
		if err != nil {
			return result{}, app.Snapshot{}, fmt.Errorf("read program %s: %w", id, err)
		}
		out := result{version: version}
		if visible {
			out.p = &p
		}
		return out, snapshot(pos, ok), nil
	})
	return res.p, res.version, snap, err
}

// Programs implements app.ProgramReadModel.
func (c *Catalog) Programs(ctx context.Context, ids []string, after *app.WritePoint) (map[string]*app.Program, app.Snapshot, error) {
	valid := make([]string, 0, len(ids))
	for _, id := range ids {
		if uuidRE.MatchString(id) {
			valid = append(valid, id)
		}
	}
	return routed(ctx, c.r, func(ctx context.Context, db *pgxpool.Pool) (map[string]*app.Program, app.Snapshot, error) {
		sql, args := c.check(c.programsSQL, after, []any{c.projection, valid})
		rows, err := db.Query(ctx, sql, args...)
		if err != nil {
			return nil, app.Snapshot{}, fmt.Errorf("read %d programs: %w", len(valid), err)
		}
		defer rows.Close()
		out := make(map[string]*app.Program, len(valid))
		var (
			pos int64
			ok  bool
		)
		for rows.Next() {
			p, err := scanProgram(rows, &pos, &ok)
			if err != nil {
				return nil, app.Snapshot{}, fmt.Errorf("read programs: %w", err)
			}
			if p.ID != "" {
				out[p.ID] = &p
			}
		}
		if err := rows.Err(); err != nil {
			return nil, app.Snapshot{}, fmt.Errorf("read programs: %w", err)
		}
		return out, snapshot(pos, ok), nil
	})
}

// Episodes implements app.EpisodesReadModel.
func (c *Catalog) Episodes(ctx context.Context, programID string, after *app.WritePoint) ([]app.Episode, bool, app.Snapshot, error) {
	type result struct {
		eps     []app.Episode
		visible bool
	}
	res, snap, err := routed(ctx, c.r, func(ctx context.Context, db *pgxpool.Pool) (result, app.Snapshot, error) {
		sql, args := c.check(c.episodesSQL, after, []any{c.projection, programID})
		rows, err := db.Query(ctx, sql, args...)
		if err != nil {
			return result{}, app.Snapshot{}, fmt.Errorf("read episodes of %s: %w", programID, err)
		}
		defer rows.Close()
		var (
			out     result
			pos     int64
			ok      bool
			visible bool
		)
		out.eps = []app.Episode{}
		for rows.Next() {
			e, err := scanEpisode(rows, &pos, &ok, &visible)
			if err != nil {
				return result{}, app.Snapshot{}, fmt.Errorf("read episodes of %s: %w", programID, err)
			}
			out.visible = visible
			if e.ID != "" {
				out.eps = append(out.eps, e)
			}
		}
		if err := rows.Err(); err != nil {
			return result{}, app.Snapshot{}, fmt.Errorf("read episodes of %s: %w", programID, err)
		}
		return out, snapshot(pos, ok), nil
	})
	return res.eps, res.visible, snap, err
}

// Episode implements app.EpisodeReadModel.
func (c *Catalog) Episode(ctx context.Context, id string, after *app.WritePoint) (*app.Episode, string, app.Snapshot, error) {
	type result struct {
		e         *app.Episode
		programID string
	}
	res, snap, err := routed(ctx, c.r, func(ctx context.Context, db *pgxpool.Pool) (result, app.Snapshot, error) {
		sql, args := c.check(c.episodeSQL, after, []any{c.projection, id})
		var (
			pos       int64
			ok        bool
			programID string
			visible   bool
		)
		e, err := scanEpisode(db.QueryRow(ctx, sql, args...), &pos, &ok, &programID, &visible)
		if err != nil {
			return result{}, app.Snapshot{}, fmt.Errorf("read episode %s: %w", id, err)
		}
		out := result{programID: programID}
		if visible {
			out.e = &e
		}
		return out, snapshot(pos, ok), nil
	})
	return res.e, res.programID, snap, err
}

// Browse implements app.BrowseReadModel: filters as browseFilters builds them, in
// the order the partial indexes of migrations/ on published programs serve. The total is a window count over the same
// filter, and a separate count only for a page past the end.
func (c *Catalog) Browse(ctx context.Context, f app.BrowseFilter, after *app.WritePoint) ([]app.Program, int, app.Snapshot, error) {
	type result struct {
		items []app.Program
		total int
	}
	res, snap, err := routed(ctx, c.r, func(ctx context.Context, db *pgxpool.Pool) (result, app.Snapshot, error) {
		filters, values := browseFilters(f)
		order := "p.published_at DESC NULLS LAST, p.id"
		if f.Sort == app.SortTitle {
			order = "p.title, p.id"
		}
		// $1 is the projection name; the filters follow, then LIMIT and OFFSET.
		args := append([]any{c.projection}, values...)
		args = append(args, f.Limit, min(f.Offset, maxOffset))
		inner := fmt.Sprintf(`SELECT %s, count(*) OVER () AS total FROM %s p WHERE %s ORDER BY %s LIMIT $%d OFFSET $%d`,
			c.pCols, c.programs, whereClause(filters, 2), order, len(args)-1, len(args))
		sql, args := c.check(`SELECT m.pos, m.ok, x.* FROM (SELECT %s AS pos, %s AS ok) m LEFT JOIN LATERAL (`+
			strings.ReplaceAll(inner, "%", "%%")+`) x ON true`, after, args)
		rows, err := db.Query(ctx, sql, args...)
		if err != nil {
			return result{}, app.Snapshot{}, fmt.Errorf("browse programs: %w", err)
		}
		defer rows.Close()
		var (
			out   result
			pos   int64
			ok    bool
			total *int64
		)
		for rows.Next() {
			var (
				p      app.Program
				images *string
				id     *string
				title  *string
				desc   *string
				cat    *string
				lang   *string
				count  *int
				ver    *int64
			)
			if err := rows.Scan(&pos, &ok, &id, &title, &desc, &cat, &lang, &p.Tags, &p.PublishedAt, &count, &images, &ver, &total); err != nil {
				return result{}, app.Snapshot{}, fmt.Errorf("browse programs: %w", err)
			}
			if id == nil {
				continue
			}
			p.ID, p.Title, p.Description, p.Category, p.Language, p.EpisodeCount, p.Version = *id, *title, *desc, *cat, *lang, *count, *ver
			if p.Tags == nil {
				p.Tags = []string{}
			}
			if p.PublishedAt != nil {
				u := p.PublishedAt.UTC()
				p.PublishedAt = &u
			}
			if p.Images, err = decodeImages(images); err != nil {
				return result{}, app.Snapshot{}, fmt.Errorf("browse programs: %w", err)
			}
			out.items = append(out.items, p)
		}
		if err := rows.Err(); err != nil {
			return result{}, app.Snapshot{}, fmt.Errorf("browse programs: %w", err)
		}
		if total != nil {
			out.total = int(*total)
		} else if f.Offset > 0 {
			n := 0
			if err := db.QueryRow(ctx, `SELECT count(*) FROM `+c.programs+` p WHERE `+whereClause(filters, 1), values...).Scan(&n); err != nil {
				return result{}, app.Snapshot{}, fmt.Errorf("count programs: %w", err)
			}
			out.total = n
		}
		return out, snapshot(pos, ok), nil
	})
	return res.items, res.total, snap, err
}

// maxOffset keeps OFFSET within PostgreSQL's bigint while meaning "past the end".
const maxOffset = 1 << 40

// browseFilters returns the conditions of f (each with one %d placeholder for its
// parameter number) and their values. Conditions are added only when given, so
// each combination gets a plan that can use its index.
func browseFilters(f app.BrowseFilter) ([]string, []any) {
	var conds []string
	var values []any
	if f.Category != "" {
		conds, values = append(conds, "p.category = $%d"), append(values, f.Category)
	}
	if f.Language != "" {
		conds, values = append(conds, "p.language = $%d"), append(values, f.Language)
	}
	if f.Tag != "" {
		conds, values = append(conds, "p.tags @> ARRAY[$%d::text]"), append(values, f.Tag)
	}
	return conds, values
}

// whereClause numbers the conditions' parameters from first and joins them after
// the visibility condition.
func whereClause(conds []string, first int) string {
	parts := []string{"p.status = 'published'"}
	for i, c := range conds {
		parts = append(parts, fmt.Sprintf(c, first+i))
	}
	return strings.Join(parts, " AND ")
}

// Categories implements app.CategoriesReadModel.
func (c *Catalog) Categories(ctx context.Context, after *app.WritePoint) ([]app.Category, app.Snapshot, error) {
	return routed(ctx, c.r, func(ctx context.Context, db *pgxpool.Pool) ([]app.Category, app.Snapshot, error) {
		sql, args := c.check(c.categoriesSQL, after, []any{c.projection})
		rows, err := db.Query(ctx, sql, args...)
		if err != nil {
			return nil, app.Snapshot{}, fmt.Errorf("read categories: %w", err)
		}
		defer rows.Close()
		out := []app.Category{}
		var (
			pos int64
			ok  bool
		)
		for rows.Next() {
			var (
				slug  *string
				count *int
			)
			if err := rows.Scan(&pos, &ok, &slug, &count); err != nil {
				return nil, app.Snapshot{}, fmt.Errorf("read categories: %w", err)
			}
			if slug != nil {
				out = append(out, app.Category{Slug: *slug, ProgramCount: *count})
			}
		}
		if err := rows.Err(); err != nil {
			return nil, app.Snapshot{}, fmt.Errorf("read categories: %w", err)
		}
		return out, snapshot(pos, ok), nil
	})
}

// Checkpoints implements app.CheckpointReader: the serving projections' positions,
// read where the queries read (a replica when one is healthy).
func (c *Catalog) Checkpoints(ctx context.Context) (map[string]int64, error) {
	out, _, err := routed(ctx, c.r, func(ctx context.Context, db *pgxpool.Pool) (map[string]int64, app.Snapshot, error) {
		rows, err := db.Query(ctx, `SELECT name, position FROM projection_checkpoints WHERE serving`)
		if err != nil {
			return nil, app.Snapshot{}, fmt.Errorf("read checkpoints: %w", err)
		}
		m := map[string]int64{}
		var (
			name string
			pos  int64
		)
		_, err = pgx.ForEachRow(rows, []any{&name, &pos}, func() error {
			m[name] = pos
			return nil
		})
		if err != nil {
			return nil, app.Snapshot{}, fmt.Errorf("read checkpoints: %w", err)
		}
		return m, app.Snapshot{Includes: true}, nil
	})
	return out, err
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
