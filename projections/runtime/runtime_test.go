package runtime_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

func newDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	return pool
}

func newRuntime(t testing.TB, pool *pgxpool.Pool, src runtime.Source, projs []runtime.Projection, opts runtime.Options) *runtime.Runtime {
	t.Helper()
	r, err := runtime.New(pool, src, projs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewRejectsBadInput(t *testing.T) {
	t.Parallel()
	pool := &pgxpool.Pool{}
	src := pt.NewSource()
	tests := []struct {
		name  string
		pool  *pgxpool.Pool
		src   runtime.Source
		projs []runtime.Projection
	}{
		{"nil pool", nil, src, both()},
		{"nil source", pool, nil, both()},
		{"nil projection", pool, src, []runtime.Projection{nil}},
		{"duplicate", pool, src, []runtime.Projection{catalog.New(nil), catalog.New(nil)}},
	}
	for _, tc := range tests {
		if _, err := runtime.New(tc.pool, tc.src, tc.projs, runtime.Options{}); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

// TestRunProjectsHistory runs both projections over a generated history and checks
// the sinks against a clean projection and the reference fold, and the status.
func TestRunProjectsHistory(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	hist := pt.Generate(21, 100)
	head := hist[len(hist)-1].Position
	r := newRuntime(t, pool, pt.NewSource(hist...), both(), fastOptions())
	w := startWaiter(t, pool)
	started(t, r)
	waitAll(t, w, head, catalog.Name, editorial.Name)

	if got, want := pt.Checksums(t, pool, sinksOf(both())), cleanChecksums(t, newDB, hist); !reflect.DeepEqual(got, want) {
		t.Errorf("sinks differ from a clean projection\n got %v\nwant %v", got, want)
	}
	pt.CheckModel(t, pool, hist, catalog.ProgramsTable, true)
	pt.CheckModel(t, pool, hist, editorial.ProgramsTable, false)

	st, err := r.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Position != head || s.HeadPosition != head || s.LagEvents != 0 || s.LagSeconds != 0 || s.DeadLetters != 0 || !s.Serving {
			t.Errorf("status after catching up = %+v", s)
		}
	}
}

// killSchedule holds the positions at which one projection's runs are killed,
// each once, so kills are spread over the whole history whatever the machine's speed.
type killSchedule struct {
	mu     sync.Mutex
	points []int64
}

// crosses consumes and returns the index of the next kill point that batch
// reaches, or -1.
func (k *killSchedule) crosses(batch []events.Envelope) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.points) == 0 || batch[len(batch)-1].Position < k.points[0] {
		return -1
	}
	k.points = k.points[1:]
	return len(k.points)
}

// TestCrashAtRandomMoments kills the runtime again and again, each time restarting
// a fresh runtime from the committed checkpoints: at kill points spread over a
// history of a few thousand events, half of them from inside a batch after the
// projection wrote (the batch transaction is rolled back by the kill) and half by a
// transient error after writing (rolled back, retried) followed by a kill at a
// random instant; and every run also at a random instant. The final sinks must
// equal a clean projection, with no dead letters.
func TestCrashAtRandomMoments(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	hist := pt.Generate(31, 200)
	if len(hist) < 2000 {
		t.Fatalf("history of %d events, want a few thousand", len(hist))
	}
	src := pt.NewSource(hist...)
	head := hist[len(hist)-1].Position
	rng := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	roll := func(n int) int {
		mu.Lock()
		defer mu.Unlock()
		return rng.IntN(n)
	}
	const pointsPerProjection = 12
	schedule := func() *killSchedule {
		k := &killSchedule{}
		for _, i := range rng.Perm(len(hist))[:pointsPerProjection] {
			k.points = append(k.points, hist[i].Position)
		}
		slices.Sort(k.points)
		return k
	}
	catKills, edKills := schedule(), schedule()
	var restarts, midBatchKills, rollbacks int
	for iter := 0; checkpoint(t, pool, catalog.Name) < head || checkpoint(t, pool, editorial.Name) < head; iter++ {
		if iter == 1000 {
			t.Fatalf("no convergence after %d restarts: catalog at %d, editorial at %d, head %d",
				iter, checkpoint(t, pool, catalog.Name), checkpoint(t, pool, editorial.Name), head)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var killedInside, rolledBack atomic.Int64
		wrap := func(p runtime.Projection, kills *killSchedule) runtime.Projection {
			return &hook{Projection: p, after: func(ctx context.Context, batch []events.Envelope) error {
				i := kills.crosses(batch)
				switch {
				case i < 0:
					return nil
				case i%2 == 0:
					killedInside.Add(1)
					cancel()
					return nil
				default:
					rolledBack.Add(1)
					time.AfterFunc(time.Duration(roll(20_000))*time.Microsecond, cancel)
					return &pgconn.PgError{Code: "40001", Message: "injected serialization failure"}
				}
			}}
		}
		opts := fastOptions()
		opts.BatchSize = 1 + roll(300)
		r := newRuntime(t, pool, src, []runtime.Projection{wrap(catalog.New(nil), catKills), wrap(editorial.New(nil), edKills)}, opts)
		timer := time.AfterFunc(time.Duration(roll(200_000))*time.Microsecond, cancel)
		if err := r.Run(ctx); err != nil {
			t.Fatalf("Run: %v", err)
		}
		timer.Stop()
		cancel()
		restarts++
		midBatchKills += int(killedInside.Load())
		rollbacks += int(rolledBack.Load())
	}
	t.Logf("%d events, %d restarts: %d killed mid-batch, %d after a rolled-back batch, the rest at random instants",
		len(hist), restarts, midBatchKills, rollbacks)
	if restarts < 20 || midBatchKills != pointsPerProjection || rollbacks != pointsPerProjection {
		t.Fatalf("%d restarts, %d mid-batch kills, %d rollbacks: want every one of the %d kill points hit",
			restarts, midBatchKills, rollbacks, 2*pointsPerProjection)
	}
	if got, want := pt.Checksums(t, pool, sinksOf(both())), cleanChecksums(t, newDB, hist); !reflect.DeepEqual(got, want) {
		t.Errorf("sinks after crashes differ from a clean projection\n got %v\nwant %v", got, want)
	}
	pt.CheckModel(t, pool, hist, catalog.ProgramsTable, true)
	r := newRuntime(t, pool, src, both(), fastOptions())
	if dl, err := r.DeadLetters(context.Background(), "", 0); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters after transient failures = %v, %v; want none", dl, err)
	}
}

// TestTwoRuntimesOneProjection runs two runtimes of the same projections at once
// (two projector processes): the checkpoint lock keeps them from interleaving.
func TestTwoRuntimesOneProjection(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	hist := pt.Generate(33, 80)
	src := pt.NewSource(hist...)
	opts := fastOptions()
	opts.BatchSize = 37
	w := startWaiter(t, pool)
	started(t, newRuntime(t, pool, src, both(), opts))
	started(t, newRuntime(t, pool, src, both(), opts))
	waitAll(t, w, hist[len(hist)-1].Position, catalog.Name, editorial.Name)
	if got, want := pt.Checksums(t, pool, sinksOf(both())), cleanChecksums(t, newDB, hist); !reflect.DeepEqual(got, want) {
		t.Errorf("sinks differ from a clean projection\n got %v\nwant %v", got, want)
	}
}

// victimOf picks an event in the middle of a program stream: some of its stream's
// events come after it.
func victimOf(t *testing.T, hist []events.Envelope) (events.Envelope, []events.Envelope) {
	t.Helper()
	for i, e := range hist[len(hist)/3:] {
		if !strings.HasPrefix(e.StreamID, "program-") || e.Version < 2 {
			continue
		}
		var later []events.Envelope
		for _, l := range hist[len(hist)/3+i+1:] {
			if l.StreamID == e.StreamID {
				later = append(later, l)
			}
		}
		if len(later) >= 2 {
			return e, later
		}
	}
	t.Fatal("no event with later events on its stream")
	return events.Envelope{}, nil
}

// without returns hist without the events of stream at or after position from.
func without(hist []events.Envelope, stream string, from int64) []events.Envelope {
	var out []events.Envelope
	for _, e := range hist {
		if e.StreamID != stream || e.Position < from {
			out = append(out, e)
		}
	}
	return out
}

// TestDeadLetterAndReplay: an event whose apply keeps failing (a bug) is retried,
// then dead-lettered with the later events of its stream parked behind it, while
// every other stream and projection moves on. Once the bug is fixed, Replay — run
// while the runtime keeps running — applies them in order and the sinks equal a
// clean projection.
func TestDeadLetterAndReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newDB(t)
	hist := pt.Generate(41, 40)
	victim, later := victimOf(t, hist)
	var buggy atomic.Bool
	buggy.Store(true)
	cat := &hook{Projection: catalog.New(nil), before: func(_ context.Context, batch []events.Envelope) error {
		for _, e := range batch {
			if buggy.Load() && e.EventID == victim.EventID {
				return errors.New("bug: cannot apply this event")
			}
		}
		return nil
	}}
	opts := fastOptions()
	opts.MaxAttempts = 3
	r := newRuntime(t, pool, pt.NewSource(hist...), []runtime.Projection{cat, editorial.New(nil)}, opts)
	w := startWaiter(t, pool)
	started(t, r)
	head := hist[len(hist)-1].Position
	waitAll(t, w, head, catalog.Name, editorial.Name)

	dls, err := r.DeadLetters(ctx, catalog.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1+len(later) {
		t.Fatalf("%d dead letters, want the victim and its %d later events: %+v", len(dls), len(later), dls)
	}
	if d := dls[0]; d.Position != victim.Position || d.EventID != victim.EventID || d.Type != victim.Type || d.StreamID != victim.StreamID ||
		d.Parked || d.Attempts != 3 || !strings.Contains(d.Error, "bug: cannot apply") || string(d.Data) != string(victim.Data) {
		t.Errorf("victim dead letter = %+v", d)
	}
	for i, d := range dls[1:] {
		if d.Position != later[i].Position || !d.Parked {
			t.Errorf("dead letter %d = %+v, want parked event at %d", i+1, d, later[i].Position)
		}
	}
	// The victim's stream stopped before it; everything else is complete.
	pt.CheckModel(t, pool, without(hist, victim.StreamID, victim.Position), catalog.ProgramsTable, true)
	pt.CheckModel(t, pool, hist, editorial.ProgramsTable, false)
	st, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].DeadLetters != int64(len(dls)) || st[1].DeadLetters != 0 || st[0].Position != head {
		t.Errorf("status = %+v", st)
	}

	buggy.Store(false)
	res, err := r.Replay(ctx, catalog.Name)
	if err != nil {
		t.Fatal(err)
	}
	if res.Replayed != len(dls) || res.Remaining != 0 {
		t.Fatalf("replay = %+v, want all %d replayed", res, len(dls))
	}
	if got, want := pt.Checksums(t, pool, sinksOf(both())), cleanChecksums(t, newDB, hist); !reflect.DeepEqual(got, want) {
		t.Errorf("sinks after replay differ from a clean projection\n got %v\nwant %v", got, want)
	}
	if dls, err := r.DeadLetters(ctx, catalog.Name, 0); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after replay = %v, %v", dls, err)
	}
	if _, err := r.Replay(ctx, "nope"); !errors.Is(err, runtime.ErrUnknownProjection) {
		t.Errorf("replay of an unknown projection: %v", err)
	}
}

// TestPoisonEventDeadLetteredAtOnce: an event that cannot be decoded is
// dead-lettered without retries; replaying it fails again and keeps it, with the
// attempt counted.
func TestPoisonEventDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newDB(t)
	hist := pt.Golden(t)
	const poisonAt = 6 // the program update
	hist[poisonAt].Data = []byte(`{"program_id": 42}`)
	cat := &hook{Projection: catalog.New(nil)}
	opts := fastOptions()
	opts.BatchSize = 1 // so the hook counts applications per event
	r := newRuntime(t, pool, pt.NewSource(hist...), []runtime.Projection{cat, editorial.New(nil)}, opts)
	w := startWaiter(t, pool)
	started(t, r)
	waitAll(t, w, hist[len(hist)-1].Position, catalog.Name, editorial.Name)

	// 11 events, of which the poison is tried once and the 4 later events of the
	// program stream are parked without being applied.
	if calls := cat.calls.Load(); calls != int64(len(hist)-4) {
		t.Errorf("catalog Apply called %d times, want %d (no retries of a poison event)", calls, len(hist)-4)
	}
	for _, name := range []string{catalog.Name, editorial.Name} {
		dls, err := r.DeadLetters(ctx, name, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) != 5 || dls[0].Position != hist[poisonAt].Position || dls[0].Attempts != 1 || dls[0].Parked ||
			!strings.Contains(dls[0].Error, "poison") {
			t.Fatalf("%s dead letters = %+v", name, dls)
		}
	}
	progs := pt.LoadPrograms(t, pool, catalog.ProgramsTable, true)
	if p := progs[pt.GoldenProgramID]; p.Version != 5 || p.Status != "published" || p.EpisodeCount != 1 {
		t.Errorf("program after poison = %+v, want the state before it", p)
	}
	res, err := r.Replay(ctx, catalog.Name)
	if err != nil || res.Replayed != 0 || res.Remaining != 5 {
		t.Fatalf("replay = %+v, %v; want nothing replayed, 5 remaining", res, err)
	}
	dls, _ := r.DeadLetters(ctx, catalog.Name, 1)
	if len(dls) != 1 || dls[0].Attempts != 2 {
		t.Errorf("after a failed replay = %+v, want 2 attempts", dls)
	}
}

// TestWaitForPosition: a wait returns at once for an applied position, returns
// after the batch that applies it commits (its rows are then readable), and
// gives up with the context's error when the position never comes.
func TestWaitForPosition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newDB(t)
	hist := pt.Golden(t)
	src := pt.NewSource(hist[:3]...)
	w := startWaiter(t, pool)
	started(t, newRuntime(t, pool, src, both(), fastOptions()))
	waitAll(t, w, hist[2].Position, editorial.Name)

	t.Run("already applied", func(t *testing.T) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := w.WaitForPosition(c, editorial.Name, hist[1].Position); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("applied later", func(t *testing.T) {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- w.WaitForPosition(c, editorial.Name, hist[5].Position) }()
		select {
		case err := <-done:
			t.Fatalf("returned %v before the event was even appended", err)
		default:
		}
		src.Append(hist[3:6]...)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// Read your write: the row that the awaited event changed is there.
		if p := pt.LoadPrograms(t, pool, editorial.ProgramsTable, false)[pt.GoldenProgramID]; p.Version != 5 {
			t.Fatalf("after the wait the program is at version %d, want 5", p.Version)
		}
	})
	t.Run("never", func(t *testing.T) {
		c, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		err := w.WaitForPosition(c, catalog.Name, hist[len(hist)-1].Position)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("wait for an absent position = %v, want a deadline error", err)
		}
	})
	t.Run("waiter not running", func(t *testing.T) {
		idle, err := runtime.NewWaiter(pool, quiet)
		if err != nil {
			t.Fatal(err)
		}
		c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := idle.WaitForPosition(c, editorial.Name, hist[1].Position); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("wait without Run = %v, want a deadline error", err)
		}
	})
}

// TestStatusLag: before a run the lag counts the events above the checkpoint up
// to the cap, and its age is the oldest unapplied event's.
func TestStatusLag(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	hist := pt.Generate(61, 40)
	now := hist[0].OccurredAt.Add(time.Hour)
	tests := []struct {
		name   string
		cap    int
		events int64
		capped bool
	}{
		{"capped", 100, 100, true},
		{"exact", 100_000, int64(len(hist)), false},
	}
	for _, tc := range tests {
		opts := fastOptions()
		opts.LagCap, opts.Now = tc.cap, func() time.Time { return now }
		r := newRuntime(t, pool, pt.NewSource(hist...), both(), opts)
		st, err := r.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 2 || st[0].Name != catalog.Name || st[0].Position != 0 || st[0].HeadPosition != hist[len(hist)-1].Position ||
			st[0].LagEvents != tc.events || st[0].LagEventsCapped != tc.capped || st[0].LagSeconds != 3600 {
			t.Errorf("%s: status = %+v", tc.name, st)
		}
	}
}

// flakySource ends every subscription with an error after a few batches, as a
// dropped connection would.
type flakySource struct {
	*pt.Source
	ends atomic.Int64
}

func (f *flakySource) Subscribe(ctx context.Context, after int64, batchSize int, handle func(context.Context, []events.Envelope) error) error {
	n := 0
	err := f.Source.Subscribe(ctx, after, batchSize, func(ctx context.Context, batch []events.Envelope) error {
		if n++; n > 2 {
			return errors.New("connection reset by peer")
		}
		return handle(ctx, batch)
	})
	if ctx.Err() == nil {
		f.ends.Add(1)
	}
	return err
}

// TestErrorsAreRetriedOrDeadLettered: transient failures (serialization,
// schema, network, dropped subscriptions) are retried until they pass and never
// dead-letter anything; an event error that persists on one event does.
func TestErrorsAreRetriedOrDeadLettered(t *testing.T) {
	t.Parallel()
	hist := pt.Golden(t)
	tests := []struct {
		name  string
		err   error
		times int64 // how many applications of the batch holding hist[3] fail
		dead  int   // dead letters expected in the catalog
	}{
		{"serialization failure", &pgconn.PgError{Code: "40001"}, 5, 0},
		{"missing table (a deploy problem)", &pgconn.PgError{Code: "42P01"}, 5, 0},
		{"network", &net.OpError{Op: "read", Err: errors.New("connection reset")}, 5, 0},
		{"event error once", &pgconn.PgError{Code: "23505"}, 1, 0},
		{"event error every time", &pgconn.PgError{Code: "22P02"}, 1000, 1 + 7}, // the event and the 7 later ones of its stream
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := newDB(t)
			var failed atomic.Int64
			cat := &hook{Projection: catalog.New(nil), before: func(_ context.Context, batch []events.Envelope) error {
				for _, e := range batch {
					if e.Position == hist[3].Position && failed.Add(1) <= tc.times {
						return tc.err
					}
				}
				return nil
			}}
			src := &flakySource{Source: pt.NewSource(hist...)}
			opts := fastOptions()
			opts.BatchSize = 2
			r := newRuntime(t, pool, src, []runtime.Projection{cat, editorial.New(nil)}, opts)
			w := startWaiter(t, pool)
			started(t, r)
			waitAll(t, w, hist[len(hist)-1].Position, catalog.Name, editorial.Name)
			dls, err := r.DeadLetters(context.Background(), catalog.Name, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) != tc.dead {
				t.Fatalf("%d dead letters, want %d: %+v", len(dls), tc.dead, dls)
			}
			if tc.dead == 0 {
				pt.CheckModel(t, pool, hist, catalog.ProgramsTable, true)
			}
			if src.ends.Load() == 0 {
				t.Error("the subscription never dropped: the resubscribe path went untested")
			}
		})
	}
}

// TestCheckpointDeletedWhileRunning: a checkpoint row deleted under a running
// runtime is recreated and the projection goes on.
func TestCheckpointDeletedWhileRunning(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	hist := pt.Golden(t)
	src := pt.NewSource(hist[:5]...)
	w := startWaiter(t, pool)
	started(t, newRuntime(t, pool, src, both(), fastOptions()))
	waitAll(t, w, hist[4].Position, catalog.Name, editorial.Name)
	if _, err := pool.Exec(context.Background(), `DELETE FROM projection_checkpoints`); err != nil {
		t.Fatal(err)
	}
	src.Append(hist[5:]...)
	waitAll(t, w, hist[len(hist)-1].Position, catalog.Name, editorial.Name)
	pt.CheckModel(t, pool, hist, catalog.ProgramsTable, true)
}
