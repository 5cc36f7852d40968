// Package postgres is the embedded search adapter: PostgreSQL full-text search
// combined with pg_trgm similarity on title words. It implements the search projection's
// ports (search.Writer, search.Reader, search.Admin) and passes the conformance
// suite in infra/search/searchtest.
//
// # Storage
//
// Each index is one table, search_<index> (e.g. search_programs_v1), created by
// EnsureIndex. A row holds the document, its version, a folded title (search_norm:
// unaccented, lower case; it scores typo matches), a title tsvector and a
// weighted tsvector of the whole document (title A, tags B, episode titles C,
// description D; the 'simple' configuration, no stemming: the catalog is
// multilingual) under GIN indexes with small pending lists (textGINOptions), and
// btree indexes on category and language. Deleting
// keeps the row as a tombstone (deleted, text emptied, tsvectors NULL) that
// remembers the version, so an older redelivered upsert cannot bring the document
// back; tombstones never match a text query and the match-all query skips them.
//
// Beside it, searchwords_<index> is the index's vocabulary: every word that is or
// was in a title (folded like the titles), under a trigram GIN index, against which
// typos are corrected. Upsert adds the words of the titles it writes in the same
// statement; nothing removes them (a word no title holds any more only costs a
// correction that finds nothing, until the next rebuild). EnsureIndex fills it from
// the titles when an index created before the vocabulary existed lacks it.
//
// # Query
//
// The words of the text must all match (AND), the last one as a prefix, as in
// Meilisearch. Typos are found through the title: a title with, for each word of
// four letters or more, a vocabulary word within pg_trgm's word similarity 0.5
// (one of the closest few) matches too ("nordik noir" finds "Nordic Noir"), ranked
// below exact matches and looked for only when the exact matches do not fill the
// requested page. One statement returns the page, the capped total and both
// facets, in one round trip; its candidate sources and their caps are described at
// buildSQL. Performance (the searches of `mediamesh bench query`, 100,000
// programs, 2 cores shared with other work): a mean of 1 to 4 ms per search,
// about 750 searches/s through the adapter with 16 clients (the earlier typo
// source, word similarity over the title trigram index, allowed about 220).
//
// # Reads and writes
//
// The adapter is stateless beyond its pool: the composition root may build one on
// the primary for the projection and another on a read replica for the query API.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/projections/search"
)

// Index is the PostgreSQL search adapter.
type Index struct {
	pool *pgxpool.Pool
}

var (
	_ search.Writer = (*Index)(nil)
	_ search.Reader = (*Index)(nil)
	_ search.Admin  = (*Index)(nil)
)

// New returns the adapter on pool. The database must be migrated (search_norm,
// pg_trgm and unaccent come from migrations/).
func New(pool *pgxpool.Pool) (*Index, error) {
	if pool == nil {
		return nil, errors.New("search postgres: nil pool")
	}
	return &Index{pool: pool}, nil
}

// names are the identifiers of one index's table and its indexes. Swap renames all
// of them, so they always follow the table's current name (trgm is the title
// trigram index of earlier versions, which upgrade drops).
type names struct {
	table, pkey, tsv, titleTSV, trgm, category, language string
	// words is the index's vocabulary of title words (see upgrade); its name
	// starts with "searchwords_", which no index table's name does.
	words, wordsPkey, wordsTrgm string
}

func namesOf(index string) (names, error) {
	if err := search.ValidateIndexName(index); err != nil {
		return names{}, err
	}
	return tableNames(index), nil
}

func tableNames(index string) names {
	t, w := "search_"+index, "searchwords_"+index
	return names{
		table: t, pkey: t + "_pkey", tsv: t + "_tsv", titleTSV: t + "_title_tsv", trgm: t + "_title_trgm",
		category: t + "_category", language: t + "_language",
		words: w, wordsPkey: w + "_pkey", wordsTrgm: w + "_trgm",
	}
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

// lockKey serializes DDL on one index name across processes.
const lockSQL = `SELECT pg_advisory_xact_lock(hashtext('mediamesh.search.' || $1))`

// EnsureIndex creates the index's table and indexes when they do not exist.
// Concurrent callers are serialized by an advisory lock, so two roles starting at
// once do not race on CREATE TABLE.
func (x *Index) EnsureIndex(ctx context.Context, index string) error {
	n, err := namesOf(index)
	if err != nil {
		return err
	}
	stmts := []string{
		// Column order matters for speed: a search reads the columns up to tsv of
		// thousands of rows, and PostgreSQL walks every variable-length column before
		// the one it needs. Fixed-width and searched columns come first, the
		// document's own text (read only by Documents) last.
		`CREATE TABLE IF NOT EXISTS ` + ident(n.table) + ` (
			version        bigint      NOT NULL,
			published_at   timestamptz,
			episode_count  integer     NOT NULL DEFAULT 0,
			deleted        boolean     NOT NULL DEFAULT false,
			id             text        COLLATE "C" NOT NULL,
			category       text        NOT NULL DEFAULT '',
			language       text        NOT NULL DEFAULT '',
			tsv            tsvector,
			title_tsv      tsvector,
			title_norm     text        NOT NULL DEFAULT '',
			title          text        NOT NULL DEFAULT '',
			description    text        NOT NULL DEFAULT '',
			tags           text[]      NOT NULL DEFAULT '{}',
			episode_titles text[]      NOT NULL DEFAULT '{}',
			CONSTRAINT ` + ident(n.pkey) + ` PRIMARY KEY (id)
		)`,
		`CREATE INDEX IF NOT EXISTS ` + ident(n.tsv) + ` ON ` + ident(n.table) + ` USING gin (tsv) WITH ` + textGINOptions,
		`CREATE INDEX IF NOT EXISTS ` + ident(n.titleTSV) + ` ON ` + ident(n.table) + ` USING gin (title_tsv) WITH ` + textGINOptions,
		`CREATE INDEX IF NOT EXISTS ` + ident(n.category) + ` ON ` + ident(n.table) + ` (category)`,
		`CREATE INDEX IF NOT EXISTS ` + ident(n.language) + ` ON ` + ident(n.table) + ` (language)`,
	}
	return x.inTx(ctx, "ensure search index "+index, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockSQL, index); err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return upgrade(ctx, tx, n)
	})
}

// GIN storage options. A GIN index with fastupdate on collects new entries in a
// pending list and merges them into the index in bulk once the list outgrows
// gin_pending_list_limit (kB), which costs an upsert far less than inserting
// every entry one by one (fastupdate off): the search projection's database CPU
// for `mediamesh bench ingest`'s 100,000 programs fell from about 8.5 s to 5.8 s
// (see upsertSQL). A search reads the whole pending list of each GIN index it
// uses, several times for the sources of a text query, so the lists are kept at
// the smallest limit, 64 kB (8 pages; PostgreSQL's default is 4 MB): full, they
// left BenchmarkSearch100k's database CPU per search within noise (1.62 ms
// against 1.61 with empty lists), where lists of 64 pages cost 0.5 ms more. A
// larger limit saved the upserts nothing measurable.
const (
	textGINOptions  = `(fastupdate = on, gin_pending_list_limit = 64)`
	wordsGINOptions = textGINOptions
)

// upgrade brings an index created by an earlier version of the adapter to the
// current layout; the caller holds the index's advisory lock. It drops the
// trigram index of the titles, which typo matching no longer uses (it cost every
// upsert a GIN update per title trigram), sets the GIN indexes' storage options
// (earlier versions created them with fastupdate off), and creates the
// vocabulary: every word that is or was in a title (insert-only, filled by
// Upsert), under a trigram index, so a typo is corrected against a few tens of
// thousands of words instead of every title (see buildSQL). An existing index's
// vocabulary is filled from its titles (about a second per 100,000 programs).
func upgrade(ctx context.Context, tx pgx.Tx, n names) error {
	if _, err := tx.Exec(ctx, `DROP INDEX IF EXISTS `+ident(n.trgm)); err != nil {
		return err
	}
	if err := setGINOptions(ctx, tx, n.tsv, textGINOptions); err != nil {
		return err
	}
	if err := setGINOptions(ctx, tx, n.titleTSV, textGINOptions); err != nil {
		return err
	}
	ok, err := tableExists(ctx, tx, n.words)
	if err != nil {
		return err
	}
	if ok {
		return setGINOptions(ctx, tx, n.wordsTrgm, wordsGINOptions)
	}
	stmts := []string{
		`CREATE TABLE ` + ident(n.words) + ` (
			word text NOT NULL,
			CONSTRAINT ` + ident(n.wordsPkey) + ` PRIMARY KEY (word)
		)`,
		`INSERT INTO ` + ident(n.words) + ` (word)
			SELECT DISTINCT w FROM ` + ident(n.table) + `, unnest(tsvector_to_array(title_tsv)) AS w ORDER BY 1`,
		`CREATE INDEX ` + ident(n.wordsTrgm) + ` ON ` + ident(n.words) + ` USING gin (word gin_trgm_ops) WITH ` + wordsGINOptions,
		`ANALYZE ` + ident(n.words),
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// setGINOptions gives an existing index the storage options opts when its own
// differ, so a start that finds them set takes no lock.
func setGINOptions(ctx context.Context, tx pgx.Tx, index, opts string) error {
	want := strings.Split(strings.NewReplacer("(", "", ")", "", " ", "").Replace(opts), ",")
	var same bool
	err := tx.QueryRow(ctx, `SELECT coalesce(c.reloptions, '{}') @> $2::text[] AND $2::text[] @> coalesce(c.reloptions, '{}')
		FROM pg_class c WHERE c.oid = to_regclass($1)`, ident(index), want).Scan(&same)
	if errors.Is(err, pgx.ErrNoRows) || same { // no such index, or already set
		return nil
	}
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `ALTER INDEX `+ident(index)+` SET `+opts)
	return err
}

// DropIndex drops the index's tables; a missing index is not an error.
func (x *Index) DropIndex(ctx context.Context, index string) error {
	n, err := namesOf(index)
	if err != nil {
		return err
	}
	return x.inTx(ctx, "drop search index "+index, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockSQL, index); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+ident(n.table)+`, `+ident(n.words))
		return err
	})
}

// Swap exchanges two indexes by renaming their tables (and the tables' indexes) in
// one transaction: readers see either the old or the new pair, never a mix. The
// renames take ACCESS EXCLUSIVE locks, so searches in flight finish first and new
// ones wait for the commit (milliseconds). Prepared statements re-resolve table
// names after the DDL, so pooled connections follow the swap.
func (x *Index) Swap(ctx context.Context, a, b string) error {
	na, err := namesOf(a)
	if err != nil {
		return err
	}
	nb, err := namesOf(b)
	if err != nil {
		return err
	}
	if a == b {
		return fmt.Errorf("swap search index %s with itself: %w", a, search.ErrInvalidIndexName)
	}
	// "search__swap" and "searchwords__swap" cannot be the tables of a valid index
	// name (they start with a letter).
	tmp := tableNames("_swap")
	return x.inTx(ctx, fmt.Sprintf("swap search indexes %s and %s", a, b), func(tx pgx.Tx) error {
		// Lock in a fixed order so two concurrent swaps cannot deadlock.
		first, second := a, b
		if second < first {
			first, second = second, first
		}
		for _, name := range []string{first, second} {
			if _, err := tx.Exec(ctx, lockSQL, name); err != nil {
				return err
			}
		}
		for _, n := range []names{na, nb} {
			ok, err := tableExists(ctx, tx, n.table)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s: %w", strings.TrimPrefix(n.table, "search_"), search.ErrIndexNotFound)
			}
			if err := upgrade(ctx, tx, n); err != nil {
				return err
			}
		}
		for _, step := range [][2]names{{na, tmp}, {nb, na}, {tmp, nb}} {
			if err := rename(ctx, tx, step[0], step[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

func rename(ctx context.Context, tx pgx.Tx, from, to names) error {
	stmts := []string{
		`ALTER TABLE ` + ident(from.table) + ` RENAME TO ` + ident(to.table),
		`ALTER INDEX ` + ident(from.pkey) + ` RENAME TO ` + ident(to.pkey),
		`ALTER INDEX ` + ident(from.tsv) + ` RENAME TO ` + ident(to.tsv),
		`ALTER INDEX ` + ident(from.titleTSV) + ` RENAME TO ` + ident(to.titleTSV),
		`ALTER INDEX ` + ident(from.category) + ` RENAME TO ` + ident(to.category),
		`ALTER INDEX ` + ident(from.language) + ` RENAME TO ` + ident(to.language),
		`ALTER TABLE ` + ident(from.words) + ` RENAME TO ` + ident(to.words),
		`ALTER INDEX ` + ident(from.wordsPkey) + ` RENAME TO ` + ident(to.wordsPkey),
		`ALTER INDEX ` + ident(from.wordsTrgm) + ` RENAME TO ` + ident(to.wordsTrgm),
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func tableExists(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, table string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, ident(table)).Scan(&ok)
	return ok, err
}

func (x *Index) inTx(ctx context.Context, what string, fn func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, x.pool, fn)
	if err != nil {
		return fmt.Errorf("%s: %w", what, mapErr(err))
	}
	return nil
}

// mapErr turns "relation does not exist" into search.ErrIndexNotFound.
func mapErr(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w (%s)", search.ErrIndexNotFound, pgErr.Message)
	}
	return err
}
