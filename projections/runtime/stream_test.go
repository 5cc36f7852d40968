package runtime_test

import (
	"context"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// memStream is a partitioned stream in memory: each partition hands its delivery
// sequence over in random batches, concurrently with the other partitions, and
// delivers a batch again until handle accepts it (like an uncommitted offset).
type memStream struct {
	parts [][]events.Envelope
	seed  uint64
	// names records the consumer names Consume was called with; finished counts
	// the consumers that got every partition acknowledged to its end.
	mu       sync.Mutex
	names    []string
	finished int
	changed  chan struct{}
	// retries counts batches handle refused.
	retries atomic.Int64
}

// newMemStream partitions hist by program (as the relay keys content.events) and
// gives each partition an at-least-once delivery order: per stream in order, with
// rewinds and stale duplicates (projectiontest.Redeliver).
func newMemStream(t *testing.T, hist []events.Envelope, partitions int, seed uint64) *memStream {
	t.Helper()
	codec := events.NewCodec()
	byPart := make([][]events.Envelope, partitions)
	for _, e := range hist {
		h := fnv.New32a()
		h.Write([]byte(programOf(t, codec, e)))
		i := int(h.Sum32() % uint32(partitions))
		byPart[i] = append(byPart[i], e)
	}
	s := &memStream{seed: seed, changed: make(chan struct{})}
	for i, evs := range byPart {
		s.parts = append(s.parts, pt.Redeliver(seed+uint64(i), evs))
	}
	return s
}

func (s *memStream) Consume(ctx context.Context, name string, handle func(context.Context, []events.Envelope) error) error {
	s.mu.Lock()
	s.names = append(s.names, name)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i, seq := range s.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(s.seed, uint64(i)))
			for len(seq) > 0 {
				n := min(len(seq), 1+rng.IntN(60))
				if err := handle(ctx, seq[:n]); err != nil {
					if ctx.Err() != nil {
						return
					}
					s.retries.Add(1)
					continue // not acknowledged: delivered again
				}
				seq = seq[n:]
			}
		}()
	}
	wg.Wait()
	if ctx.Err() == nil {
		s.mu.Lock()
		s.finished++
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
	<-ctx.Done() // a stream does not end by itself
	return ctx.Err()
}

// waitFinished waits (bounded) until n consumers got the whole stream acknowledged.
func (s *memStream) waitFinished(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		s.mu.Lock()
		done, changed := s.finished >= n, s.changed
		s.mu.Unlock()
		if done {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d consumers did not consume the stream to its end within 60 s", n)
		}
	}
}

// TestStreamRedeliveries feeds both projections from a partitioned stream whose
// partitions redeliver (rewinds and stale duplicates) and are applied concurrently,
// while transient failures refuse some batches: the sinks equal a clean projection,
// each projection consumes under its versioned name, and the checkpoint holds the
// highest position applied.
func TestStreamRedeliveries(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	hist := pt.Generate(31, 120)
	stream := newMemStream(t, hist, 5, 7)

	var failures atomic.Int64
	flaky := func(p runtime.Projection) runtime.Projection {
		return &hook{Projection: p, before: func(context.Context, []events.Envelope) error {
			if rand.IntN(6) == 0 {
				failures.Add(1)
				return &pgconn.PgError{Code: "40001", Message: "injected serialization failure"}
			}
			return nil
		}}
	}
	opts := fastOptions()
	opts.Stream = stream
	r := newRuntime(t, pool, pt.NewSource(hist...), []runtime.Projection{flaky(catalog.New(nil)), flaky(editorial.New(nil))}, opts)
	stop := started(t, r)
	stream.waitFinished(t, 2)
	stop()

	if got, want := pt.Checksums(t, pool, sinksOf(both())), cleanChecksums(t, newDB, hist); !reflect.DeepEqual(got, want) {
		t.Errorf("sinks differ from a clean projection\n got %v\nwant %v", got, want)
	}
	pt.CheckModel(t, pool, hist, catalog.ProgramsTable, true)
	head := hist[len(hist)-1].Position
	for _, name := range []string{catalog.Name, editorial.Name} {
		if cp := checkpoint(t, pool, name); cp != head {
			t.Errorf("%s checkpoint %d, want the highest position %d", name, cp, head)
		}
	}
	stream.mu.Lock()
	names := stream.names
	stream.mu.Unlock()
	if len(names) != 2 || !(names[0] == "catalog.v1" && names[1] == "editorial.v1" || names[0] == "editorial.v1" && names[1] == "catalog.v1") {
		t.Errorf("consumer names %v, want catalog.v1 and editorial.v1", names)
	}
	if failures.Load() == 0 {
		t.Error("no failure was injected: the test proves less than it claims")
	}
}

// TestStreamDeadLetter: in the stream mode a poison event is dead-lettered, later
// events of its stream are parked, and other streams go on; the checkpoint is not a
// watermark, so a dead letter below it is still recorded.
func TestStreamDeadLetter(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	hist := pt.Generate(32, 30)
	stream := newMemStream(t, hist, 3, 9)
	// Break one event in the middle of a program stream, every delivery of it.
	var bad events.Envelope
	for i, e := range hist {
		if i > len(hist)/2 && e.Type == events.TypeProgramUpdated {
			bad = hist[i]
			break
		}
	}
	if bad.EventID == "" {
		t.Fatal("no event to break")
	}
	for _, part := range stream.parts {
		for i := range part {
			if part[i].EventID == bad.EventID {
				part[i].Data = []byte(`{"program_id": 42}`)
			}
		}
	}
	opts := fastOptions()
	opts.Stream = stream
	r := newRuntime(t, pool, pt.NewSource(hist...), []runtime.Projection{catalog.New(nil)}, opts)
	stop := started(t, r)
	stream.waitFinished(t, 1)
	stop()
	dls, err := r.DeadLetters(context.Background(), catalog.Name, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) == 0 || dls[0].EventID != bad.EventID || dls[0].Parked {
		t.Fatalf("dead letters %+v, want the broken event %s first", dls, bad.EventID)
	}
	for _, d := range dls[1:] {
		if d.StreamID != bad.StreamID || !d.Parked || d.Position <= bad.Position {
			t.Errorf("dead letter %+v: want only later events of %s, parked", d, bad.StreamID)
		}
	}
	if _, err := r.Replay(context.Background(), "nope"); !errors.Is(err, runtime.ErrUnknownProjection) {
		t.Errorf("replay of an unknown projection: %v", err)
	}
}

// TestStreamFrozenVersionAppliesNothing: a version whose checkpoint a rebuild's
// switch froze (runtime.Frozen) applies nothing from a stream either, though its
// batches are acknowledged: its sinks stay as of the switch.
func TestStreamFrozenVersionAppliesNothing(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	hist := pt.Generate(33, 20)
	stream := newMemStream(t, hist, 3, 11)
	if _, err := pool.Exec(context.Background(), `INSERT INTO projection_checkpoints (name, version, position, serving) VALUES ($1, 1, $2, false)`,
		catalog.Name, runtime.Frozen); err != nil {
		t.Fatal(err)
	}
	opts := fastOptions()
	opts.Stream = stream
	r := newRuntime(t, pool, pt.NewSource(hist...), []runtime.Projection{catalog.New(nil)}, opts)
	stop := started(t, r)
	stream.waitFinished(t, 1)
	stop()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+catalog.ProgramsTable).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a frozen version applied events: %d programs", n)
	}
	if cp := checkpoint(t, pool, catalog.Name); cp != runtime.Frozen {
		t.Errorf("checkpoint %d, want it still frozen", cp)
	}
}
