package rebuild

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Kind says what a projection is, which decides whether it may be rebuilt (see
// DESIGN.md, "What can be rebuilt").
type Kind int

const (
	// KindCatalog projections are derived from the event store alone: rebuilt blue/
	// green across every sink they own.
	KindCatalog Kind = iota
	// KindTelemetry aggregates (play counts, trending, popular) are built from plays,
	// which never enter the event store: their tables are the source of truth, so a
	// rebuild from the event store would lose them. Never rebuilt.
	KindTelemetry
	// KindProcessor processors have side effects (thumbnails, CDN purges) and record
	// their results as events: re-running them would repeat the effects. Never
	// rebuilt.
	KindProcessor
)

// Rebuildable reports whether projections of kind k may be rebuilt.
func (k Kind) Rebuildable() bool { return k == KindCatalog }

func (k Kind) String() string {
	switch k {
	case KindCatalog:
		return "catalog"
	case KindTelemetry:
		return "telemetry"
	case KindProcessor:
		return "processor"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Sink is one kind of storage a projection version owns beside its PostgreSQL
// writes' checkpoint: its tables, a Redis key prefix, a search index. Every
// method must be idempotent: a rebuild that died half-way calls them again.
type Sink interface {
	// Prepare creates version next's storage beside version live's (shaped like
	// it), so that version next can be written while live serves.
	Prepare(ctx context.Context, live, next int) error
	// Drop deletes version v's storage; storage that does not exist is not an error.
	Drop(ctx context.Context, v int) error
}

// ReadySink is a Sink that trails the projection's commits, such as Redis
// documents written by a flusher from an outbox the projection fills in its
// transaction. Before switching from version live to version next, the Manager
// asks Ready inside the switch transaction, which holds every checkpoint row of
// the projection (position, next's checkpoint, cannot move meanwhile); the switch
// waits until it says yes, so queries never read a half-written sink. A sink that
// always trails its checkpoint a little under live traffic should answer yes once
// next's storage is at least as far as live's (not necessarily at position), or
// the switch could wait for ever.
type ReadySink interface {
	Sink
	Ready(ctx context.Context, tx pgx.Tx, live, next int, position int64) (bool, error)
}

// WorkerSink is a Sink that needs a process per version (the documents flusher of
// version v writes mm:catalog:v<v>:…): the Manager runs Run(ctx, v) beside version
// v's projection, for as long as it runs that projection. Run returns when ctx ends.
type WorkerSink interface {
	Sink
	Run(ctx context.Context, v int) error
}

// Definition describes one projection to the Manager.
type Definition struct {
	// Name is the projection's stable name ("catalog"), as in its checkpoint rows.
	Name string
	// Kind decides whether it may be rebuilt.
	Kind Kind
	// BaseVersion is the version a fresh deployment runs (default 1).
	BaseVersion int
	// Projection returns the projection writing version v's sinks. Nil for a
	// projection the Manager does not run (telemetry aggregates, processors that
	// run elsewhere): it is then only reported.
	Projection func(v int) (runtime.Projection, error)
	// Sinks are created for a rebuild's new version and dropped with a replaced
	// one. The PostgreSQL tables are one of them (see Tables).
	Sinks []Sink
	// Checkpoint, for a consumer of the event store that the Manager does not run
	// (a side-effecting processor with its own checkpoint table), returns its
	// position and when it last moved; the Manager adds head, lag and dead letters
	// (recorded under the name and version 1).
	Checkpoint func(ctx context.Context) (position int64, updatedAt time.Time, err error)
	// Report, for a projection that does not consume the event store (telemetry
	// aggregates), returns its status rows as they are.
	Report func(ctx context.Context) ([]Status, error)
}

func (d Definition) baseVersion() int {
	if d.BaseVersion < 1 {
		return 1
	}
	return d.BaseVersion
}

func (d Definition) validate() error {
	if d.Name == "" {
		return errors.New("definition without a name")
	}
	if d.Kind.Rebuildable() && d.Projection == nil {
		return fmt.Errorf("definition %s: a rebuildable projection needs Projection", d.Name)
	}
	return nil
}

// Rebuildable returns the Definition of a catalog projection p whose statements
// name its tables as constants: version v runs p through Versioned, and the tables
// (p.Sinks() and extraTables, e.g. an outbox) are created and dropped by a Tables
// sink; sinks are the projection's other storage (Redis documents, …).
func Rebuildable(pool *pgxpool.Pool, p runtime.Projection, extraTables []string, sinks ...Sink) (Definition, error) {
	if p == nil {
		return Definition{}, errors.New("rebuildable definition: nil projection")
	}
	if _, err := Versioned(p, p.Version()+1, extraTables...); err != nil {
		return Definition{}, err
	}
	tables, err := NewTables(pool, append(append([]string(nil), p.Sinks()...), extraTables...)...)
	if err != nil {
		return Definition{}, err
	}
	return Definition{
		Name:        p.Name(),
		Kind:        KindCatalog,
		BaseVersion: p.Version(),
		Projection:  func(v int) (runtime.Projection, error) { return Versioned(p, v, extraTables...) },
		Sinks:       append([]Sink{tables}, sinks...),
	}, nil
}

// Telemetry returns the Definition of a telemetry aggregate: listed by Status as
// report says, never rebuilt (a rebuild is refused with ErrNotRebuildable).
func Telemetry(name string, report func(ctx context.Context) ([]Status, error)) Definition {
	return Definition{Name: name, Kind: KindTelemetry, Report: report}
}

// Processor returns the Definition of a side-effecting processor that keeps its
// checkpoint in processor_checkpoints (migrations/00011): listed with its position
// and lag, never re-run by a rebuild.
func Processor(pool *pgxpool.Pool, name string) Definition {
	return Definition{Name: name, Kind: KindProcessor, Checkpoint: func(ctx context.Context) (int64, time.Time, error) {
		var pos int64
		var at time.Time
		err := pool.QueryRow(ctx, `SELECT position, updated_at FROM processor_checkpoints WHERE name = $1`, name).Scan(&pos, &at)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, time.Time{}, nil
		}
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("processor %s checkpoint: %w", name, err)
		}
		return pos, at, nil
	}}
}

// Tables is the Sink of a projection's PostgreSQL tables, named "<stem>_v<n>".
//
// Prepare creates each table of the new version as
// CREATE TABLE … (LIKE <live table> INCLUDING ALL): columns, defaults, CHECK and
// NOT NULL constraints, the primary key and every index, and then its storage
// parameters (fillfactor), so the new version has
// exactly the live one's shape (including changes made by later migrations) and is
// written with its indexes in place. A serial column gets a sequence of its own (LIKE
// would share the live table's, which dies with it). Drop drops the tables with a
// lock timeout, so a query still reading an old table delays the drop (retried
// later) instead of queueing every new reader behind it.
type Tables struct {
	pool  *pgxpool.Pool
	stems []string
}

var _ Sink = (*Tables)(nil)

// NewTables returns the Tables sink of tables (names of any one version).
func NewTables(pool *pgxpool.Pool, tables ...string) (*Tables, error) {
	if pool == nil {
		return nil, errors.New("tables sink: nil pool")
	}
	t := &Tables{pool: pool}
	for _, name := range tables {
		stem, _, err := splitVersion(name)
		if err != nil {
			return nil, err
		}
		t.stems = append(t.stems, stem)
	}
	return t, nil
}

// Names returns the tables of version v.
func (t *Tables) Names(v int) []string {
	out := make([]string, len(t.stems))
	for i, s := range t.stems {
		out[i] = fmt.Sprintf("%s_v%d", s, v)
	}
	return out
}

// Prepare implements Sink.
func (t *Tables) Prepare(ctx context.Context, live, next int) error {
	return pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		for _, stem := range t.stems {
			from, to := fmt.Sprintf("%s_v%d", stem, live), fmt.Sprintf("%s_v%d", stem, next)
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ident(to)+` (LIKE `+ident(from)+` INCLUDING ALL)`); err != nil {
				return fmt.Errorf("create %s like %s: %w", to, from, err)
			}
			// LIKE copies no storage parameters (a fillfactor, say): copy them.
			var opts []string
			if err := tx.QueryRow(ctx, `SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = $1::regclass`, ident(from)).Scan(&opts); err != nil {
				return fmt.Errorf("storage parameters of %s: %w", from, err)
			}
			if len(opts) > 0 {
				if _, err := tx.Exec(ctx, `ALTER TABLE `+ident(to)+` SET (`+strings.Join(opts, ", ")+`)`); err != nil {
					return fmt.Errorf("storage parameters of %s: %w", to, err)
				}
			}
			rows, err := tx.Query(ctx, `SELECT a.attname::text FROM pg_attribute a
				WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
				  AND pg_get_serial_sequence($2::text, a.attname::text) IS NOT NULL`, from, ident(from))
			if err != nil {
				return fmt.Errorf("serial columns of %s: %w", from, err)
			}
			cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("serial columns of %s: %w", from, err)
			}
			for _, col := range cols {
				seq := to + "_" + col + "_seq"
				if _, err := tx.Exec(ctx, `CREATE SEQUENCE IF NOT EXISTS `+ident(seq)+` OWNED BY `+ident(to)+`.`+ident(col)); err != nil {
					return fmt.Errorf("create sequence %s: %w", seq, err)
				}
				if _, err := tx.Exec(ctx, `ALTER TABLE `+ident(to)+` ALTER COLUMN `+ident(col)+` SET DEFAULT nextval(`+quote(seq)+`::regclass)`); err != nil {
					return fmt.Errorf("default of %s.%s: %w", to, col, err)
				}
			}
		}
		return nil
	})
}

// Drop implements Sink.
func (t *Tables) Drop(ctx context.Context, v int) error {
	return pgx.BeginFunc(ctx, t.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '5s'`); err != nil {
			return err
		}
		names := t.Names(v)
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = ident(n)
		}
		if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+strings.Join(quoted, ", ")); err != nil {
			return fmt.Errorf("drop %s: %w", strings.Join(names, ", "), err)
		}
		return nil
	})
}

// FuncSink adapts functions to a Sink (and, with ReadyFunc or RunFunc, to a
// ReadySink or WorkerSink through Ready and Run): a nil function does nothing and
// is always ready.
type FuncSink struct {
	PrepareFunc func(ctx context.Context, live, next int) error
	DropFunc    func(ctx context.Context, v int) error
	ReadyFunc   func(ctx context.Context, tx pgx.Tx, live, next int, position int64) (bool, error)
	RunFunc     func(ctx context.Context, v int) error
}

var (
	_ ReadySink  = FuncSink{}
	_ WorkerSink = FuncSink{}
)

// Prepare implements Sink.
func (f FuncSink) Prepare(ctx context.Context, live, next int) error {
	if f.PrepareFunc == nil {
		return nil
	}
	return f.PrepareFunc(ctx, live, next)
}

// Drop implements Sink.
func (f FuncSink) Drop(ctx context.Context, v int) error {
	if f.DropFunc == nil {
		return nil
	}
	return f.DropFunc(ctx, v)
}

// Ready implements ReadySink.
func (f FuncSink) Ready(ctx context.Context, tx pgx.Tx, live, next int, position int64) (bool, error) {
	if f.ReadyFunc == nil {
		return true, nil
	}
	return f.ReadyFunc(ctx, tx, live, next, position)
}

// Run implements WorkerSink; without RunFunc it waits for ctx.
func (f FuncSink) Run(ctx context.Context, v int) error {
	if f.RunFunc == nil {
		<-ctx.Done()
		return nil
	}
	return f.RunFunc(ctx, v)
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
