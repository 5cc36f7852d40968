package scaleout_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	cmdapp "github.com/mediamesh/mediamesh/command/app"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	"github.com/mediamesh/mediamesh/infra/testservers"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/runtime"
	qapp "github.com/mediamesh/mediamesh/query/app"
)

// replicaWorld is MediaMesh's write side on a private primary (the event store,
// the command handlers and the catalog projection, as the command and projector
// roles run them) and its read side through the query role's Router over the
// primary and a streaming replica (MEDIAMESH_DATABASE_READ_URLS).
type replicaWorld struct {
	pair     *testservers.PostgresPair
	primary  *pgxpool.Pool
	commands cmdapp.Handlers
	waiter   *runtime.Waiter
	// reads is the query side: replicas first, the primary as the fallback.
	reads *readmodel.Catalog
	// primaryOnly reads the primary alone, to know what it holds.
	primaryOnly *readmodel.Catalog
}

func newReplicaWorld(t *testing.T) *replicaWorld {
	t.Helper()
	pair := testservers.StartPostgresPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	primary, err := pginfra.Connect(ctx, pair.Primary.URL("mediamesh"), true)
	if err != nil {
		t.Fatalf("connect to the primary (creating the database): %v", err)
	}
	t.Cleanup(primary.Close)
	if err := pginfra.Migrate(ctx, primary); err != nil {
		t.Fatalf("migrate the primary: %v", err)
	}
	store := pgstore.New(primary)
	rt, err := runtime.New(primary, store, []runtime.Projection{catalog.New(nil)},
		runtime.Options{BatchWait: 2 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waiter, err := runtime.NewWaiter(primary, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = rt.Run(ctx) })
	wg.Go(func() { _ = waiter.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	if err := pair.WaitReplayed(ctx); err != nil {
		t.Fatal(err)
	}
	replica, err := readmodel.OpenReplica(ctx, pair.Replica.URL("mediamesh"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(replica.Close)
	router, err := readmodel.NewRouter(primary, []*pgxpool.Pool{replica}, readmodel.RouterOptions{ReplicaTimeout: 2 * time.Second, Cooldown: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	reads, err := readmodel.NewCatalog(router, readmodel.CatalogTables{})
	if err != nil {
		t.Fatal(err)
	}
	primaryRouter, err := readmodel.NewRouter(primary, nil, readmodel.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	primaryOnly, err := readmodel.NewCatalog(primaryRouter, readmodel.CatalogTables{})
	if err != nil {
		t.Fatal(err)
	}
	return &replicaWorld{pair: pair, primary: primary, commands: cmdapp.NewHandlers(store), waiter: waiter, reads: reads, primaryOnly: primaryOnly}
}

// publish creates and publishes a program through the command handlers and waits
// until the catalog projection (on the primary) has applied it.
func (w *replicaWorld) publish(ctx context.Context, t *testing.T, title string) (string, cmdapp.Result) {
	t.Helper()
	meta := cmdapp.Meta{Actor: "scaleout", CorrelationID: title}
	created, err := w.commands.CreateProgram.Handle(ctx, cmdapp.CreateProgram{Meta: meta, Title: title, Category: "drama", Language: "en"})
	if err != nil {
		t.Fatalf("create %q: %v", title, err)
	}
	res, err := w.commands.PublishProgram.Handle(ctx, cmdapp.PublishProgram{Meta: meta, ProgramID: created.ID})
	if err != nil {
		t.Fatalf("publish %q: %v", title, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := w.waiter.WaitForPosition(wctx, catalog.Name, res.Position); err != nil {
		t.Fatalf("catalog did not apply %q: %v", title, err)
	}
	if p, _, _, err := w.primaryOnly.Program(ctx, created.ID, nil); err != nil || p == nil {
		t.Fatalf("the primary's catalog lacks %q after the projection applied it: %v, %v", title, p, err)
	}
	return created.ID, res
}

// TestReadReplica runs the query side's read routing against a real streaming
// replica: reads are served by the replica (a program written while the
// replica's replay is paused is invisible to them, though the primary has it),
// commands and projections write the primary (the replica refuses every write), a
// read that must include a consistency token's write is answered by the primary
// when the replica lags, and a stopped replica makes reads fall back to the
// primary without an error, and take the replica again once it is back.
//
// What remains for the HTTP level: the same through `mediamesh serve --role
// query` with MEDIAMESH_DATABASE_READ_URLS (no 5xx while the replica is stopped),
// once the query role runs in this build.
func TestReadReplica(t *testing.T) {
	t.Parallel()
	w := newReplicaWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("the replica serves the migrated schema and refuses writes", func(t *testing.T) {
		replica, err := pginfra.Connect(ctx, w.pair.Replica.URL("mediamesh"), false)
		if err != nil {
			t.Fatal(err)
		}
		defer replica.Close()
		st, err := pginfra.MigrationsStatus(ctx, replica)
		if err != nil || len(st) == 0 {
			t.Fatalf("migrations on the replica: %v, %v", st, err)
		}
		for _, m := range st {
			if !m.Applied {
				t.Fatalf("migration %d is not applied on the replica", m.Version)
			}
		}
		// A write that reached the replica by mistake fails there instead of
		// forking the data: a command (its event append) and a projection's
		// checkpoint.
		onReplica := cmdapp.NewHandlers(pgstore.New(replica))
		_, errCommand := onReplica.CreateProgram.Handle(ctx, cmdapp.CreateProgram{
			Meta: cmdapp.Meta{Actor: "scaleout"}, Title: "Misrouted", Category: "drama", Language: "en"})
		_, errProjection := replica.Exec(ctx, "UPDATE projection_checkpoints SET position = position")
		for what, err := range map[string]error{"command": errCommand, "projection checkpoint": errProjection} {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
				t.Errorf("%s on the replica = %v, want read_only_sql_transaction (25006)", what, err)
			}
		}
	})

	t.Run("reads are served by the replica", func(t *testing.T) {
		seen, _ := w.publish(ctx, t, "Replicated")
		if err := w.pair.WaitReplayed(ctx); err != nil {
			t.Fatal(err)
		}
		if p, _, _, err := w.reads.Program(ctx, seen, nil); err != nil || p == nil {
			t.Fatalf("a replayed program is not read: %v, %v", p, err)
		}

		if err := w.pair.PauseReplay(ctx); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := w.pair.ResumeReplay(ctx); err != nil {
				t.Fatal(err)
			}
		}()
		hidden, res := w.publish(ctx, t, "Not replayed yet")
		p, _, _, err := w.reads.Program(ctx, hidden, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p != nil {
			t.Fatal("a program the replica has not replayed was read: the read went to the primary")
		}

		// With a consistency token, the same read needs the write: the replica
		// lags, so the primary answers.
		after := &qapp.WritePoint{StreamID: res.StreamID, Version: res.Version, Position: res.Position}
		p, _, snap, err := w.reads.Program(ctx, hidden, after)
		if err != nil || p == nil || !snap.Includes {
			t.Fatalf("a read that must include the write = %v, %+v, %v; want the program from the primary", p, snap, err)
		}
	})

	t.Run("a stopped replica makes reads fall back to the primary", func(t *testing.T) {
		if err := w.pair.WaitReplayed(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.pair.Replica.Stop(); err != nil {
			t.Fatal(err)
		}
		id, _ := w.publish(ctx, t, "Written while the replica is down")
		for i := range 5 {
			start := time.Now()
			p, _, _, err := w.reads.Program(ctx, id, nil)
			if err != nil || p == nil {
				t.Fatalf("read %d with the replica down = %v, %v; want the program from the primary", i, p, err)
			}
			if _, _, _, err := w.reads.Browse(ctx, qapp.BrowseFilter{Limit: 20}, nil); err != nil {
				t.Fatalf("browse %d with the replica down: %v", i, err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("read %d took %s with the replica down", i, d)
			}
		}

		// Back up, the replica serves reads again (after the router's cooldown).
		if err := w.pair.Replica.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.pair.WaitReplayed(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.pair.PauseReplay(ctx); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = w.pair.ResumeReplay(ctx) }()
		hidden, _ := w.publish(ctx, t, "After the replica's return")
		deadline := time.Now().Add(10 * time.Second)
		for {
			p, _, _, err := w.reads.Program(ctx, hidden, nil)
			if err == nil && p == nil {
				return // not replayed, yet the read found nothing: the replica answered
			}
			if time.Now().After(deadline) {
				t.Fatalf("reads did not return to the restarted replica within 10 s (last: %v, %v)", p, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
