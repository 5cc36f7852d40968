package runtime_test

import (
	"context"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/events"
	espg "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
)

// programOf returns the program an event of hist belongs to.
func programOf(t *testing.T, codec *events.Codec, e events.Envelope) string {
	t.Helper()
	ev, err := codec.DecodeEnvelope(e)
	if err != nil {
		t.Fatal(err)
	}
	return events.ProgramIDOf(ev)
}

// TestPostgresEventStore runs the projections on the real PostgreSQL event store
// while four writers append a generated history concurrently (so transactions
// commit out of position order), restarting the runtime at random instants at
// least 20 times; then a write is awaited with WaitForPosition and read back.
func TestPostgresEventStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newDB(t)
	store := espg.New(pool)
	hist := pt.Generate(71, 80)
	codec := events.NewCodec()

	// Writers each own a set of programs, so every stream keeps its order.
	const writers = 4
	parts := make([][]events.Envelope, writers)
	owner := map[string]int{}
	for _, e := range hist {
		p := programOf(t, codec, e)
		if _, ok := owner[p]; !ok {
			owner[p] = len(owner) % writers
		}
		parts[owner[p]] = append(parts[owner[p]], e)
	}
	var wg sync.WaitGroup
	var lastMu sync.Mutex
	var last int64
	appendErrs := make(chan error, writers)
	for _, part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range part {
				res, err := store.Append(ctx, e.StreamID, e.Version-1, []events.Envelope{e})
				if err != nil {
					appendErrs <- err
					return
				}
				lastMu.Lock()
				last = max(last, res.Position)
				lastMu.Unlock()
			}
		}()
	}
	appended := make(chan struct{})
	go func() { wg.Wait(); close(appended) }()

	w := startWaiter(t, pool)
	rng := rand.New(rand.NewPCG(3, 4))
	restarts := 0
	for done := false; !done || restarts < 20; restarts++ {
		select {
		case <-appended:
			done = true
		default:
		}
		c, cancel := context.WithTimeout(ctx, time.Duration(rng.IntN(100_000))*time.Microsecond)
		if err := newRuntime(t, pool, store, both(), fastOptions()).Run(c); err != nil {
			t.Fatalf("Run: %v", err)
		}
		cancel()
	}
	close(appendErrs)
	if err := <-appendErrs; err != nil {
		t.Fatalf("append: %v", err)
	}
	r := newRuntime(t, pool, store, both(), fastOptions())
	started(t, r)
	waitAll(t, w, last, catalog.Name, editorial.Name)
	t.Logf("%d events appended by %d writers, %d runtime restarts", len(hist), writers, restarts)

	if got, want := pt.Checksums(t, pool, sinksOf(both())), cleanChecksums(t, newDB, hist); !reflect.DeepEqual(got, want) {
		t.Errorf("sinks differ from a clean projection\n got %v\nwant %v", got, want)
	}
	pt.CheckModel(t, pool, hist, catalog.ProgramsTable, true)

	// Read your write through the real store: append, wait for its position, read.
	progID := "0190d5a0-7777-7000-8000-000000000001"
	typ, data, err := codec.Encode(events.ProgramCreated{ProgramID: progID, Title: "Fresh", Category: "news", Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := store.Append(ctx, events.ProgramStreamID(progID), events.ExpectNoStream,
		[]events.Envelope{{Type: typ, Data: data, OccurredAt: time.Now().UTC()}})
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := w.WaitForPosition(c, editorial.Name, res.Position); err != nil {
		t.Fatal(err)
	}
	if p, ok := pt.LoadPrograms(t, pool, editorial.ProgramsTable, false)[progID]; !ok || p.Title != "Fresh" {
		t.Fatalf("after WaitForPosition the new program is %+v (found %v)", p, ok)
	}

	waitAll(t, w, res.Position, catalog.Name)
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Position != res.Position || s.HeadPosition != res.Position || s.LagEvents != 0 || s.DeadLetters != 0 {
			t.Errorf("status = %+v", s)
		}
	}
}
