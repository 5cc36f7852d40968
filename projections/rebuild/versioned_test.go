package rebuild_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/rebuild"
)

// sqlProjection runs its statements in Apply, through every kind of call.
type sqlProjection struct {
	sinks []string
	stmts []string
}

func (p sqlProjection) Name() string    { return "t" }
func (p sqlProjection) Version() int    { return 1 }
func (p sqlProjection) Sinks() []string { return p.sinks }
func (p sqlProjection) Apply(ctx context.Context, tx pgx.Tx, _ []events.Envelope) error {
	b := &pgx.Batch{}
	for _, s := range p.stmts {
		b.Queue(s)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"things_v1"}, []string{"n"}, pgx.CopyFromRows([][]any{{int64(7)}}))
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { // a savepoint
		_, err := sp.Exec(ctx, `INSERT INTO things_v1 (n) SELECT count(*) FROM things_v10`)
		return err
	})
}

func TestVersionedRenamesWholeIdentifiersOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewDB(t)
	for _, ddl := range []string{
		`CREATE TABLE things_v1 (n bigint)`, `CREATE TABLE things_v2 (n bigint)`,
		`CREATE TABLE things_v10 (n bigint)`, `INSERT INTO things_v10 VALUES (1), (2), (3)`,
	} {
		if _, err := pool.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
	}
	base := sqlProjection{sinks: []string{"things_v1"}, stmts: []string{`INSERT INTO "things_v1" (n) VALUES (1)`, `UPDATE things_v1 SET n = n + 100 WHERE n = 1`}}
	p, err := rebuild.Versioned(base, 2)
	if err != nil {
		t.Fatal(err)
	}
	if p.Version() != 2 || p.Name() != "t" || p.Sinks()[0] != "things_v2" {
		t.Fatalf("versioned: %s v%d %v", p.Name(), p.Version(), p.Sinks())
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return p.Apply(ctx, tx, nil) }); err != nil {
		t.Fatal(err)
	}
	var got []int64
	rows, _ := pool.Query(ctx, `SELECT n FROM things_v2 ORDER BY n`)
	got, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != 3 || got[1] != 7 || got[2] != 101 {
		t.Errorf("things_v2 = %v, want [3 7 101] (things_v10 read as it is)", got)
	}
	if n := rowCount(t, pool, "things_v1"); n != 0 {
		t.Errorf("things_v1 has %d rows", n)
	}
	if same, _ := rebuild.Versioned(base, 1); same == nil || same.Version() != 1 || !isSQLProjection(same) {
		t.Error("the base version is not returned as it is")
	}
	for _, bad := range [][]string{{"things"}, {"things_v2"}, {"things_vx"}} {
		if _, err := rebuild.Versioned(sqlProjection{sinks: bad}, 2); err == nil {
			t.Errorf("sinks %v accepted", bad)
		}
	}
}

func isSQLProjection(p any) bool {
	_, ok := p.(sqlProjection)
	return ok
}
