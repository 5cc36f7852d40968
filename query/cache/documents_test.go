package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	"github.com/mediamesh/mediamesh/query/app"
	"github.com/mediamesh/mediamesh/query/cache"
	"github.com/mediamesh/mediamesh/query/cache/redisstore"
)

func TestDocumentsLayer(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f := populate(t, w)
	ctx := context.Background()
	r, err := readmodel.NewRouter(w.Pool, nil, readmodel.RouterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := readmodel.NewCatalog(r, readmodel.CatalogTables{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.New(w.rc)
	if err != nil {
		t.Fatal(err)
	}
	counters := &cache.Counters{}
	d, err := cache.NewDocuments(cache.NewBreaker(store, cache.BreakerOptions{Timeout: time.Second}), w.keys, cat, counters, nil)
	if err != nil {
		t.Fatal(err)
	}
	pgReads := func() int64 { return counters.Get(cache.LayerPostgres, cache.ResultHit) }
	docsPos, _, err := w.Docs.Position(ctx)
	if err != nil || docsPos < f.last {
		t.Fatalf("documents position %d, %v", docsPos, err)
	}

	p, v, snap, err := d.Program(ctx, f.a, nil)
	if err != nil || p == nil || p.Title != "Nordic Noir" || v != p.Version || snap.Source != app.SourceRedis || snap.Position != docsPos {
		t.Fatalf("program from Redis: %+v, %d, %+v, %v", p, v, snap, err)
	}
	// Not visible: Redis answers alone while it holds a position.
	if p, _, snap, err := d.Program(ctx, f.c, nil); err != nil || p != nil || snap.Source != app.SourceRedis {
		t.Fatalf("draft: %+v, %+v, %v", p, snap, err)
	}
	if e, pid, snap, err := d.Episode(ctx, f.e1, nil); err != nil || e == nil || pid != f.a || snap.Source != app.SourceRedis {
		t.Fatalf("episode: %+v %q %+v %v", e, pid, snap, err)
	}
	if eps, visible, snap, err := d.Episodes(ctx, f.a, nil); err != nil || !visible || len(eps) != 2 || snap.Source != app.SourceRedis {
		t.Fatalf("episodes: %+v %v %+v %v", eps, visible, snap, err)
	}
	if eps, visible, snap, err := d.Episodes(ctx, f.c, nil); err != nil || visible || len(eps) != 0 || snap.Source != app.SourceRedis {
		t.Fatalf("episodes of a draft: %+v %v %+v %v", eps, visible, snap, err)
	}
	got, snap, err := d.Programs(ctx, []string{f.a, f.b, f.c}, nil)
	if err != nil || len(got) != 2 || got[f.a] == nil || got[f.b] == nil || snap.Source != app.SourceRedis {
		t.Fatalf("programs: %v %+v %v", got, snap, err)
	}
	if n := pgReads(); n != 0 {
		t.Fatalf("%d PostgreSQL reads for what Redis holds", n)
	}

	// A token on the program's own stream: its document's version decides.
	ok := &app.WritePoint{StreamID: "program-" + f.a, Version: p.Version, Position: docsPos + 1_000_000}
	if _, _, snap, _ := d.Program(ctx, f.a, ok); snap.Source != app.SourceRedis || !snap.Includes {
		t.Errorf("a token the document includes: %+v", snap)
	}
	ahead := &app.WritePoint{StreamID: "program-" + f.a, Version: p.Version + 1, Position: docsPos + 1_000_000}
	if _, _, snap, _ := d.Program(ctx, f.a, ahead); snap.Source != app.SourcePostgres || snap.Includes {
		t.Errorf("a token ahead of the document: %+v", snap)
	}
	other := &app.WritePoint{StreamID: "asset-x", Version: 1, Position: docsPos}
	if _, snap, _ := d.Programs(ctx, []string{f.a}, other); snap.Source != app.SourceRedis || !snap.Includes {
		t.Errorf("a token at the documents' position: %+v", snap)
	}

	// Without the position (Redis lost its data) a missing document says nothing.
	if err := w.rc.Del(ctx, w.ns+"mm:catalog:v1:position").Err(); err != nil {
		t.Fatal(err)
	}
	before := pgReads()
	if p, v, snap, err := d.Program(ctx, f.c, nil); err != nil || p != nil || v == 0 || snap.Source != app.SourcePostgres {
		t.Fatalf("draft without a position: %+v %d %+v %v", p, v, snap, err)
	}
	if pgReads() != before+1 {
		t.Error("PostgreSQL was not asked")
	}
	// A document that does not decode is read from PostgreSQL.
	if err := w.rc.Set(ctx, w.ns+"mm:catalog:v1:program:"+f.b, "{", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if p, _, snap, err := d.Program(ctx, f.b, nil); err != nil || p == nil || p.Title != "Deep Sea" || snap.Source != app.SourcePostgres {
		t.Fatalf("undecodable document: %+v %+v %v", p, snap, err)
	}
}
