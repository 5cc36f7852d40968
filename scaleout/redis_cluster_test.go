package scaleout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	"github.com/mediamesh/mediamesh/infra/testservers"
	"github.com/mediamesh/mediamesh/projections/documents"
	qapp "github.com/mediamesh/mediamesh/query/app"
	qcache "github.com/mediamesh/mediamesh/query/cache"
	"github.com/mediamesh/mediamesh/query/cache/redisstore"
)

// TestRedisCluster runs the catalog's Redis paths on a real six-node cluster,
// through the client MEDIAMESH_REDIS_URL builds from comma-separated node addresses:
// the documents sink's guarded writes and announcements (infra/redis) and the query
// cache's Redis layer, rankings and invalidation subscription (query/cache,
// query/cache/redisstore). On one server every key is in the same place; on a
// cluster a command whose keys span two slots fails with CROSSSLOT, so only a
// cluster can show that every multi-key operation stays in one slot or is split.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	cluster := testservers.StartRedisCluster(t)
	client, err := mmredis.New(cluster.URL())
	if err != nil {
		t.Fatalf("client for MEDIAMESH_REDIS_URL=%s: %v", cluster.URL(), err)
	}
	t.Cleanup(func() { _ = client.Close() })
	cc, ok := client.(*goredis.ClusterClient)
	if !ok {
		t.Fatalf("MEDIAMESH_REDIS_URL=%s gave a %T, want a cluster client", cluster.URL(), client)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	ks := mmredis.CatalogKeyspace(1)
	store, err := mmredis.NewDocuments(client, ks, 0)
	if err != nil {
		t.Fatal(err)
	}

	const programs = 150
	ids := make([]string, programs)
	var writes []documents.Write
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
		writes = append(writes,
			documents.Write{Kind: documents.KindProgram, ID: ids[i], Guard: 10, Value: programDoc(t, ids[i], 1)},
			documents.Write{Kind: documents.KindEpisodes, ID: ids[i], Guard: 10, Value: []byte("[]")},
		)
	}

	t.Run("documents are written and read across every master", func(t *testing.T) {
		changed, err := store.Write(ctx, writes)
		if err != nil {
			t.Fatalf("write %d documents: %v", len(writes), err)
		}
		for i, c := range changed {
			if !c {
				t.Fatalf("write %d (%s) reported no change on a fresh cluster", i, writes[i].ID)
			}
		}
		for _, id := range ids {
			got, err := client.Get(ctx, ks.Program(id)).Bytes()
			if err != nil {
				t.Fatalf("read %s: %v", ks.Program(id), err)
			}
			if string(got) != string(programDoc(t, id, 1)) {
				t.Fatalf("%s = %s", ks.Program(id), got)
			}
		}
		// The keys spread over all three masters: a cluster that held everything on
		// one node would prove nothing about slots.
		// ForEachMaster calls back concurrently.
		var mu sync.Mutex
		var perMaster []string
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
			n, err := c.DBSize(ctx).Result()
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("master %s holds no key", c.Options().Addr)
			}
			mu.Lock()
			perMaster = append(perMaster, fmt.Sprintf("%s=%d", c.Options().Addr, n))
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(perMaster) != 3 {
			t.Fatalf("keys on %v, want three masters", perMaster)
		}
	})

	t.Run("guards order writes of one document in its own slot", func(t *testing.T) {
		again, err := store.Write(ctx, writes[:2])
		if err != nil {
			t.Fatal(err)
		}
		if again[0] || again[1] {
			t.Fatalf("rewriting the same documents reported %v, want no change", again)
		}
		stale := []documents.Write{{Kind: documents.KindProgram, ID: ids[0], Guard: 9, Value: programDoc(t, ids[0], 0)}}
		if ch, err := store.Write(ctx, stale); err != nil || ch[0] {
			t.Fatalf("stale write = %v, %v; want refused", ch, err)
		}
		newer := []documents.Write{
			{Kind: documents.KindProgram, ID: ids[0], Guard: 11, Value: programDoc(t, ids[0], 2)},
			{Kind: documents.KindProgram, ID: ids[1], Guard: 11}, // delete
		}
		if ch, err := store.Write(ctx, newer); err != nil || !ch[0] || !ch[1] {
			t.Fatalf("newer writes = %v, %v; want both applied", ch, err)
		}
		if got, _ := client.Get(ctx, ks.Program(ids[0])).Bytes(); string(got) != string(programDoc(t, ids[0], 2)) {
			t.Fatalf("%s = %s after the newer write", ks.Program(ids[0]), got)
		}
		if n, _ := client.Exists(ctx, ks.Program(ids[1])).Result(); n != 0 {
			t.Fatalf("%s still exists after its deletion", ks.Program(ids[1]))
		}
	})

	t.Run("announce bumps counters, records the position and reaches subscribers on any node", func(t *testing.T) {
		sub := client.Subscribe(ctx, ks.Invalidate())
		t.Cleanup(func() { _ = sub.Close() })
		if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
			t.Fatal(err)
		}
		if _, ok, err := store.Position(ctx); err != nil || ok {
			t.Fatalf("position before any announce = %v, %v; want none", ok, err)
		}
		ok, err := store.Announce(ctx, documents.Notice{Programs: ids[:2], Position: 42, Browse: true, Search: true}, true)
		if err != nil || !ok {
			t.Fatalf("announce = %v, %v", ok, err)
		}
		if pos, ok, err := store.Position(ctx); err != nil || !ok || pos != 42 {
			t.Fatalf("position = %d, %v, %v; want 42", pos, ok, err)
		}
		for _, k := range []string{ks.GenBrowse(), ks.GenSearch()} {
			if n, err := client.Get(ctx, k).Int64(); err != nil || n != 1 {
				t.Fatalf("%s = %d, %v; want 1", k, n, err)
			}
		}
		select {
		case msg := <-sub.Channel():
			if !strings.Contains(msg.Payload, `"position":42`) {
				t.Fatalf("invalidation message %s", msg.Payload)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no invalidation message within 10 s")
		}
	})

	t.Run("the query cache's Redis layer answers from the cluster", func(t *testing.T) {
		remote, err := redisstore.New(client)
		if err != nil {
			t.Fatal(err)
		}
		pg := &catalogOnlyInPostgres{}
		counters := &qcache.Counters{}
		layer, err := qcache.NewDocuments(remote, qcache.DefaultKeys, pg, counters, nil)
		if err != nil {
			t.Fatal(err)
		}
		// By id: the document and the position key, in two slots, in one read.
		p, version, snap, err := layer.Program(ctx, ids[2], nil)
		if err != nil || p == nil || p.ID != ids[2] || version != 1 || snap.Source != qapp.SourceRedis {
			t.Fatalf("Program = %+v, %d, %+v, %v; want the document from Redis", p, version, snap, err)
		}
		// Many ids spread over every master.
		many, _, err := layer.Programs(ctx, ids[2:60], nil)
		if err != nil || len(many) != 58 {
			t.Fatalf("Programs = %d programs, %v; want 58", len(many), err)
		}
		// A deleted document is an authoritative 404 while the position is known.
		if p, _, _, err := layer.Program(ctx, ids[1], nil); err != nil || p != nil {
			t.Fatalf("deleted program = %+v, %v; want not visible", p, err)
		}
		if n := pg.reads.Load(); n != 0 {
			t.Fatalf("%d reads fell through to PostgreSQL; Redis should have answered all", n)
		}
		if hits := counters.Get(qcache.LayerRedis, qcache.ResultHit); hits < 3 {
			t.Fatalf("%d Redis hits counted, want at least 3", hits)
		}

		// Rankings: one sorted set replaced atomically, read by range.
		key := qcache.RankingKey(qcache.DefaultKeys.Rankings, "trending", "drama")
		if err := remote.ReplaceRanking(ctx, key, ids[:3], []float64{3, 2, 1}, time.Minute); err != nil {
			t.Fatalf("replace ranking: %v", err)
		}
		top, total, err := remote.RevRange(ctx, key, 0, 2)
		if err != nil || total != 3 || len(top) != 2 || top[0] != ids[0] {
			t.Fatalf("ranking = %v of %d, %v; want %v first of 3", top, total, err, ids[0])
		}

		// Invalidations reach the query side's subscription.
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ready, got := make(chan struct{}), make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- remote.Subscribe(sctx, ks.Invalidate(), func() { close(ready) }, func(b []byte) {
				select {
				case got <- string(b):
				default:
				}
			})
		}()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("subscribe: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("not subscribed within 10 s")
		}
		if _, err := store.Announce(ctx, documents.Notice{Programs: ids[:1], Position: 43}, false); err != nil {
			t.Fatal(err)
		}
		select {
		case msg := <-got:
			if !strings.Contains(msg, `"position":43`) {
				t.Fatalf("invalidation %s", msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no invalidation within 10 s")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("subscription ended with %v", err)
		}
	})
}

// catalogOnlyInPostgres is the PostgreSQL catalog behind the query cache's Redis
// layer; it counts the reads that fell through to it.
type catalogOnlyInPostgres struct{ reads atomic.Int64 }

func (c *catalogOnlyInPostgres) Program(context.Context, string, *qapp.WritePoint) (*qapp.Program, int64, qapp.Snapshot, error) {
	c.reads.Add(1)
	return nil, 0, qapp.Snapshot{Includes: true}, nil
}

func (c *catalogOnlyInPostgres) Programs(context.Context, []string, *qapp.WritePoint) (map[string]*qapp.Program, qapp.Snapshot, error) {
	c.reads.Add(1)
	return map[string]*qapp.Program{}, qapp.Snapshot{Includes: true}, nil
}

func (c *catalogOnlyInPostgres) Episodes(context.Context, string, *qapp.WritePoint) ([]qapp.Episode, bool, qapp.Snapshot, error) {
	c.reads.Add(1)
	return nil, false, qapp.Snapshot{Includes: true}, nil
}

func (c *catalogOnlyInPostgres) Episode(context.Context, string, *qapp.WritePoint) (*qapp.Episode, string, qapp.Snapshot, error) {
	c.reads.Add(1)
	return nil, "", qapp.Snapshot{Includes: true}, nil
}

// programDoc is a program document as the catalog projection writes it.
func programDoc(t *testing.T, id string, version int64) []byte {
	t.Helper()
	b, err := json.Marshal(documents.Program{
		ID: id, Title: "Program " + id[:8], Category: "drama", Language: "en",
		Tags: []string{}, Images: json.RawMessage(`{}`), Version: version,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
