// Package readmodeltest gives discovery tests a catalog written the way production
// writes it: commands append events to the PostgreSQL event store, and the real
// projection runtime feeds the catalog projection (and optionally the search
// projection and the Redis documents sink) from the global log. Tests then wait for
// a write with Sync instead of sleeping.
package readmodeltest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	cmdapp "github.com/mediamesh/mediamesh/command/app"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/documents"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
)

// Options choose what the world runs besides the catalog projection.
type Options struct {
	// Search runs the search projection into the PostgreSQL index.
	Search bool
	// Redis, when set, runs the documents sink into this key space.
	Redis    goredis.UniversalClient
	Keyspace mmredis.Keyspace
}

// World is a fresh database with the projections running.
type World struct {
	Pool     *pgxpool.Pool
	URL      string
	Store    *pgstore.Store
	Commands cmdapp.Handlers
	Waiter   *runtime.Waiter
	Docs     *mmredis.Documents
	opts     Options
	ctx      context.Context
}

// New starts a world for t; everything stops when t ends.
func New(t testing.TB, opts Options) *World {
	t.Helper()
	pool, url := pgtest.NewDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	store := pgstore.New(pool)
	w := &World{Pool: pool, URL: url, Store: store, Commands: cmdapp.NewHandlers(store), opts: opts, ctx: ctx}
	cat := catalog.New(nil)
	if opts.Redis != nil {
		cat = catalog.New(nil, catalog.WithDocuments())
	}
	projs := []runtime.Projection{cat}
	if opts.Search {
		idx, err := searchpg.New(pool)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := search.New(idx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		projs = append(projs, sp)
	}
	rt, err := runtime.New(pool, store, projs, runtime.Options{BatchWait: 2 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waiter, err := runtime.NewWaiter(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Waiter = waiter
	var wg sync.WaitGroup
	wg.Go(func() { _ = rt.Run(ctx) })
	wg.Go(func() { _ = waiter.Run(ctx) })
	if opts.Redis != nil {
		docs, err := mmredis.NewDocuments(opts.Redis, opts.Keyspace, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.Docs = docs
		fl, err := documents.New(pool, docs, documents.Options{Poll: 50 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = fl.Run(ctx) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return w
}

// Program describes a program to create.
type Program struct {
	Title, Description, Category, Language string
	Tags                                   []string
	Publish                                bool
}

// CreateProgram creates (and optionally publishes) a program and returns its id
// and the last write.
func (w *World) CreateProgram(t testing.TB, p Program) (string, cmdapp.Result) {
	t.Helper()
	if p.Language == "" {
		p.Language = "en"
	}
	if p.Category == "" {
		p.Category = "drama"
	}
	res, err := w.Commands.CreateProgram.Handle(w.ctx, cmdapp.CreateProgram{Meta: meta(), Title: p.Title, Description: p.Description,
		Category: p.Category, Language: p.Language, Tags: p.Tags})
	if err != nil {
		t.Fatalf("create program %q: %v", p.Title, err)
	}
	if p.Publish {
		res = w.Publish(t, res.ID)
	}
	return res.ID, res
}

func meta() cmdapp.Meta { return cmdapp.Meta{Actor: "test", CorrelationID: "test"} }

// Publish publishes a program.
func (w *World) Publish(t testing.TB, id string) cmdapp.Result {
	t.Helper()
	res, err := w.Commands.PublishProgram.Handle(w.ctx, cmdapp.PublishProgram{Meta: meta(), ProgramID: id})
	if err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
	return res
}

// Unpublish unpublishes a program.
func (w *World) Unpublish(t testing.TB, id string) cmdapp.Result {
	t.Helper()
	res, err := w.Commands.UnpublishProgram.Handle(w.ctx, cmdapp.UnpublishProgram{Meta: meta(), ProgramID: id})
	if err != nil {
		t.Fatalf("unpublish %s: %v", id, err)
	}
	return res
}

// Retitle changes a program's title.
func (w *World) Retitle(t testing.TB, id, title string) cmdapp.Result {
	t.Helper()
	res, err := w.Commands.UpdateProgram.Handle(w.ctx, cmdapp.UpdateProgram{Meta: meta(), ProgramID: id, Title: &title})
	if err != nil {
		t.Fatalf("retitle %s: %v", id, err)
	}
	return res
}

// Episode describes an episode to add.
type Episode struct {
	Title           string
	Number, Season  int
	DurationSeconds int
	Publish         bool
}

// AddEpisode adds (and optionally publishes) an episode.
func (w *World) AddEpisode(t testing.TB, programID string, e Episode) (string, cmdapp.Result) {
	t.Helper()
	if e.DurationSeconds == 0 {
		e.DurationSeconds = 1800
	}
	res, err := w.Commands.AddEpisode.Handle(w.ctx, cmdapp.AddEpisode{Meta: meta(), ProgramID: programID, Title: e.Title,
		Number: e.Number, Season: e.Season, DurationSeconds: e.DurationSeconds})
	if err != nil {
		t.Fatalf("add episode %q: %v", e.Title, err)
	}
	if e.Publish {
		pub, err := w.Commands.PublishEpisode.Handle(w.ctx, cmdapp.PublishEpisode{Meta: meta(), EpisodeID: res.ID})
		if err != nil {
			t.Fatalf("publish episode %s: %v", res.ID, err)
		}
		pub.ID = res.ID
		return res.ID, pub
	}
	return res.ID, res
}

// Sync waits until every running projection (and the documents sink) includes
// the write res, failing t after 15 s.
func (w *World) Sync(t testing.TB, res cmdapp.Result) {
	t.Helper()
	w.SyncPosition(t, res.Position)
}

// SyncPosition is Sync for a global position.
func (w *World) SyncPosition(t testing.TB, pos int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(w.ctx, 15*time.Second)
	defer cancel()
	names := []string{catalog.Name}
	if w.opts.Search {
		names = append(names, search.Name)
	}
	for _, n := range names {
		if err := w.Waiter.WaitForPosition(ctx, n, pos); err != nil {
			t.Fatalf("projection %s did not reach %d: %v", n, pos, err)
		}
	}
	if w.Docs == nil {
		return
	}
	// The documents sink announces its position in Redis; there is no notification
	// to wait on from here, so look every few milliseconds, bounded.
	for {
		p, ok, err := w.Docs.Position(ctx)
		if err == nil && ok && p >= pos {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("documents did not reach %d (at %d, %v, %v)", pos, p, ok, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Checkpoint returns a projection's serving position.
func (w *World) Checkpoint(t testing.TB, name string) int64 {
	t.Helper()
	var pos int64
	if err := w.Pool.QueryRow(w.ctx, `SELECT COALESCE((SELECT position FROM projection_checkpoints WHERE name = $1 AND serving), 0)`, name).Scan(&pos); err != nil {
		t.Fatal(err)
	}
	return pos
}

// Context is the world's context (ended when the test ends).
func (w *World) Context() context.Context { return w.ctx }

// String names the world's database in failure messages.
func (w *World) String() string { return fmt.Sprintf("world on %s", w.URL) }
