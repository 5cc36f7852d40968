package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/eventstore/eventstoretest"
	"github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

var (
	_ eventstoretest.Store = (*postgres.Store)(nil)
	_ app.EventStore       = (*postgres.Store)(nil)
)

func TestConformance(t *testing.T) {
	t.Parallel()
	eventstoretest.Run(t, func(t *testing.T) eventstoretest.Store {
		pool, _ := pgtest.NewDB(t)
		return postgres.New(pool)
	})
}

// newPool opens a pool on a fresh database that is big enough for the concurrency
// test: held transactions keep their connections.
func newPool(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	_, url := pgtest.NewDB(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse test database url: %v", err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestGlobalLogNeverSkipsLateCommits is the invariant "a reader of the global log
// never skips an event, even when concurrent transactions commit out of order".
//
// Eight appenders write a few thousand events to many streams while a Subscribe from
// 0 tails the log. Some appends go through a store whose WithBeforeCommit hook holds
// the transaction open until (1) an append that started after it, and therefore has a
// higher transaction id and position, has committed and (2) a naive tailing reader
// ("position > last ORDER BY position", no snapshot bound) has read past that append.
// Only then does the held append commit. So every held append is, by construction, an
// out-of-order commit that the naive reader has already skipped: the test proves it
// exercised the race by showing the naive reader lost exactly those events, while the
// subscription must deliver every event exactly once, in strictly increasing position
// order, with each stream's versions in order.
func TestGlobalLogNeverSkipsLateCommits(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 24)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	const (
		fastWriters  = 6
		heldWriters  = 2
		fastAppends  = 80 // per fast writer, at least
		heldAppends  = 8  // per held writer
		streamsEach  = 6
		maxBatch     = 10
		hookDeadline = 20 * time.Second
	)

	var (
		gen        atomic.Int64 // bumped by each held append when it reaches the hook
		naiveHigh  atomic.Int64 // highest position the naive reader has returned
		mu         sync.Mutex
		fastCommit []fastCommitted // committed fast appends
		appended   = map[string]events.Envelope{}
		maxPos     int64
	)
	record := func(stream string, res events.AppendResult, batch []events.Envelope) {
		mu.Lock()
		defer mu.Unlock()
		maxPos = max(maxPos, res.Position)
		for i, e := range batch {
			e.StreamID, e.Version = stream, res.FirstVersion+int64(i)
			appended[e.EventID] = e
		}
	}

	hook := func(hctx context.Context, streamID string) {
		g := gen.Add(1)
		deadline := time.Now().Add(hookDeadline)
		for time.Now().Before(deadline) && hctx.Err() == nil {
			mu.Lock()
			var overtook int64
			for _, f := range fastCommit {
				if f.startGen >= g && f.position <= naiveHigh.Load() {
					overtook = f.position
					break
				}
			}
			if overtook > 0 {
				mu.Unlock()
				// The hook runs in the appending goroutine: it reports through ctx.
				hctx.Value(heldKey{}).(*heldAppend).overtakenBy = overtook
				return
			}
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
		t.Errorf("held append to %s: no later append committed and was read by the naive reader within %v", streamID, hookDeadline)
	}
	fast := postgres.New(pool)
	held := postgres.New(pool, postgres.WithBeforeCommit(hook))

	// The subscription under test.
	var (
		subMu     sync.Mutex
		delivered []events.Envelope
	)
	subCtx, stopSub := context.WithCancel(ctx)
	subDone := make(chan error, 1)
	go func() {
		subDone <- fast.Subscribe(subCtx, 0, 50, func(_ context.Context, batch []events.Envelope) error {
			subMu.Lock()
			delivered = append(delivered, batch...)
			subMu.Unlock()
			return nil
		})
	}()

	// The naive reader: the bug this store avoids, run side by side.
	naiveSeen := map[string]bool{}
	naiveCtx, stopNaive := context.WithCancel(ctx)
	naiveDone := make(chan error, 1)
	naiveRead := func(rctx context.Context) error {
		rows, err := pool.Query(rctx, `SELECT position, event_id::text FROM eventstore_events WHERE position > $1 ORDER BY position LIMIT 1000`, naiveHigh.Load())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var pos int64
			var id string
			if err := rows.Scan(&pos, &id); err != nil {
				return err
			}
			naiveSeen[id] = true
			naiveHigh.Store(pos)
		}
		return rows.Err()
	}
	go func() {
		for naiveCtx.Err() == nil {
			if err := naiveRead(naiveCtx); err != nil && naiveCtx.Err() == nil {
				naiveDone <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
		naiveDone <- nil
	}()

	// The appenders.
	var heldActive atomic.Int64
	heldActive.Store(heldWriters)
	var wg sync.WaitGroup
	appendTo := func(actx context.Context, s *postgres.Store, stream string, version *int64, batch []events.Envelope) (events.AppendResult, error) {
		n := len(batch)
		res, err := s.Append(actx, stream, *version, batch)
		if err != nil {
			return res, fmt.Errorf("append %d events to %s at version %d: %w", n, stream, *version, err)
		}
		*version = res.LastVersion
		record(stream, res, batch)
		return res, nil
	}
	for w := range fastWriters {
		wg.Go(func() {
			versions := make([]int64, streamsEach)
			for i := 0; i < fastAppends || heldActive.Load() > 0; i++ {
				if i > 50*fastAppends {
					t.Errorf("fast writer %d: held appends still open after %d appends", w, i)
					return
				}
				k := i % streamsEach
				startGen := gen.Load()
				batch := eventstoretest.NewEvents(t, 1+(i*7+w)%maxBatch, "mediamesh.test.concurrent.v1")
				res, err := appendTo(ctx, fast, fmt.Sprintf("fast-%d-%d", w, k), &versions[k], batch)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				fastCommit = append(fastCommit, fastCommitted{startGen: startGen, position: res.Position})
				mu.Unlock()
			}
		})
	}
	helds := make(chan *heldAppend, heldWriters*heldAppends)
	for w := range heldWriters {
		wg.Go(func() {
			defer heldActive.Add(-1)
			versions := make([]int64, streamsEach)
			for i := range 2 * heldAppends {
				k := i % streamsEach
				batch := eventstoretest.NewEvents(t, 1+i%maxBatch, "mediamesh.test.concurrent.v1")
				s, actx, h := fast, ctx, &heldAppend{batch: batch}
				if i%2 == 1 { // every other append of these writers is held
					s, actx = held, context.WithValue(ctx, heldKey{}, h)
				}
				res, err := appendTo(actx, s, fmt.Sprintf("held-%d-%d", w, k), &versions[k], batch)
				if err != nil {
					t.Error(err)
					return
				}
				if s == held {
					h.position = res.Position
					helds <- h
				}
			}
		})
	}
	wg.Wait()
	close(helds)
	if t.Failed() {
		t.FailNow()
	}

	// Wait (bounded) until the subscription has delivered the highest appended
	// position, then stop it and the naive reader. A subscription that skipped
	// events arrives there too, with fewer events.
	mu.Lock()
	total := len(appended)
	mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		subMu.Lock()
		n, reached := len(delivered), len(delivered) > 0 && delivered[len(delivered)-1].Position >= maxPos
		subMu.Unlock()
		if reached {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription delivered %d of %d events within 30s, not up to position %d", n, total, maxPos)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopSub()
	if err := <-subDone; err != context.Canceled {
		t.Fatalf("subscribe returned %v, want context.Canceled", err)
	}
	stopNaive()
	if err := <-naiveDone; err != nil {
		t.Fatalf("naive reader: %v", err)
	}
	if err := naiveRead(ctx); err != nil { // catch up with everything committed
		t.Fatalf("naive reader: %v", err)
	}

	// The subscription: every event exactly once, positions strictly increasing,
	// versions of each stream in order.
	if len(delivered) != total {
		t.Fatalf("subscription delivered %d events, %d were appended", len(delivered), total)
	}
	seen := map[string]bool{}
	lastVersion := map[string]int64{}
	for i, e := range delivered {
		want, ok := appended[e.EventID]
		switch {
		case !ok:
			t.Fatalf("delivered event %s was never appended", e.EventID)
		case seen[e.EventID]:
			t.Fatalf("event %s delivered twice", e.EventID)
		case i > 0 && e.Position <= delivered[i-1].Position:
			t.Fatalf("position %d delivered after %d", e.Position, delivered[i-1].Position)
		case e.StreamID != want.StreamID || e.Version != want.Version:
			t.Fatalf("event %s delivered as %s@%d, appended as %s@%d", e.EventID, e.StreamID, e.Version, want.StreamID, want.Version)
		case e.Version != lastVersion[e.StreamID]+1:
			t.Fatalf("%s: version %d delivered after version %d", e.StreamID, e.Version, lastVersion[e.StreamID])
		}
		seen[e.EventID] = true
		lastVersion[e.StreamID] = e.Version
	}

	// The race really happened: each held append got a lower position than an
	// append that committed (and was read) before it, and the naive reader lost its
	// events, which the subscription delivered.
	mu.Lock()
	defer mu.Unlock()
	outOfOrder, lostByNaive := 0, 0
	for h := range helds {
		if h.overtakenBy == 0 || h.position >= h.overtakenBy {
			t.Fatalf("held append at position %d was not overtaken (overtaking position %d)", h.position, h.overtakenBy)
		}
		outOfOrder++
		for _, e := range h.batch {
			if naiveSeen[e.EventID] {
				t.Fatalf("the naive reader saw held event %s: the out-of-order commit was not exercised", e.EventID)
			}
			lostByNaive++
		}
	}
	if outOfOrder != heldWriters*heldAppends {
		t.Fatalf("%d held appends completed, want %d", outOfOrder, heldWriters*heldAppends)
	}
	missed := 0
	for id := range appended {
		if !naiveSeen[id] {
			missed++
		}
	}
	t.Logf("%d events in %d streams; %d forced out-of-order commits; the naive reader skipped %d events (%d of them held), the subscription none",
		total, len(lastVersion), outOfOrder, missed, lostByNaive)
}

// heldAppend is one append made through the hooked store; the hook fills overtakenBy.
type heldAppend struct {
	batch       []events.Envelope
	position    int64 // the append's result
	overtakenBy int64 // position of an append that committed and was read while this one was held
}

type heldKey struct{}

type fastCommitted struct {
	startGen int64 // gen when the append started
	position int64
}

// TestReadableBound pins which open transactions hold the global log back: an open
// write transaction in this database does (an append after it is not readable until
// it ends), one in another database on the same server does not.
func TestReadableBound(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	otherPool, _ := pgtest.NewDB(t)
	store := postgres.New(pool)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// openWriter starts a transaction that has a transaction id and stays open.
	openWriter := func(t *testing.T, p *pgxpool.Pool) func() {
		t.Helper()
		tx, err := p.Begin(ctx)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
			t.Fatalf("assign transaction id: %v", err)
		}
		return func() {
			if err := tx.Commit(ctx); err != nil {
				t.Fatalf("commit: %v", err)
			}
		}
	}
	appendOne := func(t *testing.T) events.AppendResult {
		t.Helper()
		res, err := store.Append(ctx, eventstoretest.StreamName(t, "bound"), events.ExpectNoStream, eventstoretest.NewEvents(t, 1, "mediamesh.test.bound.v1"))
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		return res
	}
	head := func(t *testing.T) int64 {
		t.Helper()
		h, err := store.HeadPosition(ctx)
		if err != nil {
			t.Fatalf("head position: %v", err)
		}
		return h
	}
	waitHead := func(t *testing.T, pos int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for head(t) < pos {
			if time.Now().After(deadline) {
				t.Fatalf("head position %d did not reach %d within 10s", head(t), pos)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	t.Run("open transaction in another database", func(t *testing.T) {
		release := openWriter(t, otherPool)
		defer release()
		waitHead(t, appendOne(t).Position)
	})
	t.Run("open transaction in this database", func(t *testing.T) {
		release := openWriter(t, pool)
		res := appendOne(t)
		if h := head(t); h >= res.Position {
			release()
			t.Fatalf("head position %d includes an append made while an older transaction is open", h)
		}
		evs, err := store.ReadAll(ctx, 0, 1000)
		if err != nil {
			t.Fatalf("read all: %v", err)
		}
		for _, e := range evs {
			if e.Position >= res.Position {
				t.Fatalf("read all returned position %d while an older transaction is open", e.Position)
			}
		}
		release()
		waitHead(t, res.Position)
	})
}
