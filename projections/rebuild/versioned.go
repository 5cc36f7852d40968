package rebuild

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// VersionedTable returns the name of table (a name ending in "_v<n>", like
// "catalog_programs_v1") for version v: "catalog_programs_v<v>".
func VersionedTable(table string, v int) (string, error) {
	stem, _, err := splitVersion(table)
	if err != nil {
		return "", err
	}
	return stem + "_v" + strconv.Itoa(v), nil
}

// splitVersion splits "catalog_programs_v1" into "catalog_programs" and 1.
func splitVersion(table string) (string, int, error) {
	i := strings.LastIndex(table, "_v")
	if i <= 0 {
		return "", 0, fmt.Errorf("sink %q: %w", table, errUnversioned)
	}
	n, err := strconv.Atoi(table[i+2:])
	if err != nil || n < 1 || strconv.Itoa(n) != table[i+2:] {
		return "", 0, fmt.Errorf("sink %q: %w", table, errUnversioned)
	}
	return table[:i], n, nil
}

var errUnversioned = errors.New(`sink name does not end in "_v<version>"`)

// Versioned returns p writing the sinks of version v instead of its own.
//
// Every sink is named with its version from the first day, but the projections'
// statements name their tables as constants ("catalog_programs_v1"): a projection
// is written for one version. Rather than have every projection template every
// statement, Versioned runs p unchanged and rewrites, in each statement p sends
// through the transaction it is given (Exec, Query, QueryRow, SendBatch, Prepare,
// CopyFrom and savepoints), every identifier of p's own tables — its Sinks() plus
// extra, the tables it writes that are not read models (an outbox) — from
// "<stem>_v<p.Version()>" to "<stem>_v<v>". Matching is on whole identifiers
// (catalog_programs_v1 never matches catalog_programs_v10), so only p's own tables
// move. The returned projection reports Version() == v, so its checkpoint, its dead
// letters and its consumer group are those of version v.
//
// What Versioned cannot see, p must not do: write through a connection other than
// the transaction (tx.Conn() is passed through untouched) or name its tables in
// data rather than in SQL. A projection that offers a constructor per version is
// given to the Manager directly instead.
func Versioned(p runtime.Projection, v int, extra ...string) (runtime.Projection, error) {
	if p == nil {
		return nil, errors.New("versioned projection: nil projection")
	}
	if v < 1 {
		return nil, fmt.Errorf("versioned projection %s: version %d, want >= 1", p.Name(), v)
	}
	base := p.Version()
	tables := append(append([]string(nil), p.Sinks()...), extra...)
	var stems []string
	sinks := make([]string, 0, len(p.Sinks()))
	for i, t := range tables {
		stem, n, err := splitVersion(t)
		if err != nil {
			return nil, fmt.Errorf("versioned projection %s: %w", p.Name(), err)
		}
		if n != base {
			return nil, fmt.Errorf("versioned projection %s: sink %q is not of version %d", p.Name(), t, base)
		}
		stems = append(stems, regexp.QuoteMeta(stem))
		if i < len(p.Sinks()) {
			sinks = append(sinks, stem+"_v"+strconv.Itoa(v))
		}
	}
	if v == base {
		return p, nil
	}
	if len(stems) == 0 {
		return nil, fmt.Errorf("versioned projection %s: no sinks to rename", p.Name())
	}
	re, err := regexp.Compile(`\b(` + strings.Join(stems, "|") + `)_v` + strconv.Itoa(base) + `\b`)
	if err != nil {
		return nil, fmt.Errorf("versioned projection %s: %w", p.Name(), err)
	}
	return &versioned{inner: p, version: v, sinks: sinks, r: &renamer{re: re, to: "${1}_v" + strconv.Itoa(v)}}, nil
}

// versioned is Versioned's projection.
type versioned struct {
	inner   runtime.Projection
	version int
	sinks   []string
	r       *renamer
}

func (p *versioned) Name() string    { return p.inner.Name() }
func (p *versioned) Version() int    { return p.version }
func (p *versioned) Sinks() []string { return append([]string(nil), p.sinks...) }

// Unwrap returns the projection that Versioned renames for.
func (p *versioned) Unwrap() runtime.Projection { return p.inner }

func (p *versioned) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	return p.inner.Apply(ctx, &renamingTx{Tx: tx, r: p.r}, batch)
}

// renamer rewrites statements, caching the result per statement text (a
// projection sends the same few statements over and over).
type renamer struct {
	re    *regexp.Regexp
	to    string
	cache sync.Map // string -> string
}

func (r *renamer) sql(s string) string {
	if v, ok := r.cache.Load(s); ok {
		return v.(string)
	}
	out := r.re.ReplaceAllString(s, r.to)
	r.cache.Store(s, out)
	return out
}

func (r *renamer) ident(id pgx.Identifier) pgx.Identifier {
	out := make(pgx.Identifier, len(id))
	for i, part := range id {
		out[i] = r.sql(part)
	}
	return out
}

// renamingTx is a pgx.Tx whose statements name version v's tables.
type renamingTx struct {
	pgx.Tx
	r *renamer
}

func (t *renamingTx) Begin(ctx context.Context) (pgx.Tx, error) {
	sp, err := t.Tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &renamingTx{Tx: sp, r: t.r}, nil
}

func (t *renamingTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	return t.Tx.CopyFrom(ctx, t.r.ident(table), cols, src)
}

func (t *renamingTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	for _, q := range b.QueuedQueries {
		q.SQL = t.r.sql(q.SQL)
	}
	return t.Tx.SendBatch(ctx, b)
}

func (t *renamingTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.Tx.Prepare(ctx, name, t.r.sql(sql))
}

func (t *renamingTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.Tx.Exec(ctx, t.r.sql(sql), args...)
}

func (t *renamingTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.Tx.Query(ctx, t.r.sql(sql), args...)
}

func (t *renamingTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.Tx.QueryRow(ctx, t.r.sql(sql), args...)
}
