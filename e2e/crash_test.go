package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"reflect"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/catalog/catalogtest"
)

// envProjector carries a child projector's configuration (JSON); its presence is
// what makes TestHelperProjector run.
const envProjector = "MEDIAMESH_E2E_PROJECTOR"

// TestHelperProjector is not a test: it is the projector process the crash tests
// start (this test binary re-executed with -test.run=^TestHelperProjector$) and kill.
// Run directly, it does nothing.
func TestHelperProjector(t *testing.T) {
	raw := os.Getenv(envProjector)
	if raw == "" {
		return
	}
	var cfg projectorConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("%s: %v", envProjector, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := runProjector(ctx, cfg, log); err != nil {
		t.Fatal(err)
	}
}

// child is a running projector process.
type child struct {
	cmd    *exec.Cmd
	output *bytes.Buffer
}

// startChild re-executes this test binary as a projector with cfg.
func startChild(t *testing.T, cfg projectorConfig) *child {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProjector$", "-test.count=1")
	cmd.Env = append(os.Environ(), envProjector+"="+string(raw))
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start projector: %v", err)
	}
	c := &child{cmd: cmd, output: out}
	t.Cleanup(func() { c.kill() })
	return c
}

// kill sends SIGKILL and reaps the process (a second call does nothing).
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

// appendStream appends progs' events to the event store from four writers (each
// owning a quarter of the programs, so every stream keeps its order), in batched
// appends of 1–20 events of one stream, interleaving the programs; it returns when
// done or ctx ends. (Batched appends keep 20,000 events to about 2,000
// transactions: seconds, even under the race detector.)
func appendStream(ctx context.Context, s *system, progs []catalogtest.Program) error {
	const writers = 4
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			var mine []catalogtest.Program
			for i := w; i < len(progs); i += writers {
				mine = append(mine, progs[i])
			}
			next := make([]int, len(mine))
			for left := len(mine); left > 0; {
				for i, p := range mine {
					if next[i] == len(p.Events) {
						continue
					}
					n := min(len(p.Events)-next[i], 1+rng.IntN(20))
					chunk := p.Events[next[i] : next[i]+n]
					if _, err := s.store.Append(ctx, chunk[0].StreamID, int64(next[i]), chunk); err != nil {
						errs[w] = fmt.Errorf("append %s at %d: %w", chunk[0].StreamID, next[i], err)
						return
					}
					next[i] += n
					if next[i] == len(p.Events) {
						left--
					}
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// crashTest appends a stream of 20,000 events while a child projector is killed
// with SIGKILL kills times at random moments and restarted; then a last projector
// catches up and every read model (PostgreSQL tables and Redis documents) must
// equal a clean projection of the same events.
func crashTest(t *testing.T, kafkaMode bool, kills int, maxDelay time.Duration) {
	s := newSystem(t, kafkaMode)
	progs := catalogtest.Generate(uint64(time.Now().UnixNano()), 20000)
	cfg := s.config(200) // smaller batches: more transactions to be killed in

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	appendDone := make(chan error, 1)
	genStart := time.Now()
	go func() { appendDone <- appendStream(ctx, s, progs) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	behind := 0
	var appendErr error
	appending := true
	for i := range kills {
		before := catalogCheckpoint(t, s)
		c := startChild(t, cfg)
		// Kill it at a random moment of its work: once it has committed something
		// (a Kafka projector first rejoins its groups, which takes seconds), or, when
		// the stream is complete and already applied, once it runs with nothing left.
		started := time.Now()
		eventually(t, 90*time.Second, "the restarted projector's first commit", func() error {
			select {
			case appendErr = <-appendDone:
				appending = false
			default:
			}
			cp := catalogCheckpoint(t, s)
			if cp > before {
				return nil
			}
			if !appending && appendErr == nil {
				if head, err := s.store.HeadPosition(context.Background()); err == nil && cp >= head {
					return nil // everything applied: no commit to wait for
				}
			}
			return fmt.Errorf("checkpoint still %d", cp)
		})
		if appendErr != nil {
			t.Fatalf("append: %v", appendErr)
		}
		delay := time.Duration(rng.Int64N(int64(maxDelay)))
		time.Sleep(delay)
		head, _ := s.store.HeadPosition(context.Background())
		cp := catalogCheckpoint(t, s)
		if appending || cp < head {
			behind++
		}
		c.kill()
		t.Logf("kill %d: %v after the projector's start, %v after its first commit (checkpoint %d, head %d)",
			i+1, time.Since(started).Round(time.Millisecond), delay.Round(time.Millisecond), cp, head)
	}
	if appending {
		if appendErr = <-appendDone; appendErr != nil {
			t.Fatalf("append: %v", appendErr)
		}
	}
	t.Logf("appended %d events in %v; %d of %d kills came with work pending", catalogtest.Count(progs), time.Since(genStart).Round(time.Millisecond), behind, kills)
	if behind < kills/2 {
		t.Errorf("only %d of %d kills came while work was pending: the test proves less than it claims", behind, kills)
	}

	// The last projector catches up.
	final := startChild(t, cfg)
	head, err := s.store.HeadPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, s, head)
	final.kill()

	hist := readAll(t, s.store)
	if len(hist) != catalogtest.Count(progs) {
		t.Fatalf("the store holds %d events, want %d", len(hist), catalogtest.Count(progs))
	}
	want, wantDocs, wantN := cleanProjection(t, hist)
	if got := checksums(t, s.pool); !reflect.DeepEqual(got, want) {
		t.Errorf("read models differ from a clean projection\n got %v\nwant %v\nlast projector's output:\n%s", got, want, final.output)
	}
	if gotDocs, gotN := redisDocs(t, s.redis, s.ns); gotDocs != wantDocs || gotN != wantN {
		t.Errorf("Redis documents %s (%d) differ from a clean projection's %s (%d)", gotDocs, gotN, wantDocs, wantN)
	}
	t.Logf("read models: %v; %d documents", want, wantN)
}

func catalogCheckpoint(t *testing.T, s *system) int64 {
	t.Helper()
	var cp int64
	err := s.pool.QueryRow(context.Background(), `SELECT position FROM projection_checkpoints WHERE name = $1 AND version = $2`,
		catalog.Name, catalog.Version).Scan(&cp)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return cp
}

// waitCaughtUp waits until every projection applied head (in the Kafka mode: every
// consumer group committed the end of every partition, after the relay published
// head) and the documents outbox is empty with Redis at the catalog's position.
func waitCaughtUp(t *testing.T, s *system, head int64) {
	t.Helper()
	ctx := context.Background()
	if s.brokers != nil {
		eventually(t, 60*time.Second, "relay at head", func() error {
			var pos int64
			if err := s.pool.QueryRow(ctx, `SELECT COALESCE(max(position), 0) FROM relay_checkpoints`).Scan(&pos); err != nil || pos < head {
				return fmt.Errorf("relay at %d of %d (%v)", pos, head, err)
			}
			return nil
		})
		waitGroupsCaughtUp(t, s.brokers, 90*time.Second)
	}
	eventually(t, 90*time.Second, "projections at head", func() error {
		rows, err := s.pool.Query(ctx, `SELECT name, position FROM projection_checkpoints`)
		if err != nil {
			return err
		}
		type cp struct {
			name string
			pos  int64
		}
		cps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cp, error) {
			var c cp
			return c, r.Scan(&c.name, &c.pos)
		})
		if err != nil {
			return err
		}
		if len(cps) != 3 {
			return fmt.Errorf("%d checkpoints", len(cps))
		}
		for _, c := range cps {
			if c.pos < head {
				return fmt.Errorf("%s at %d of %d", c.name, c.pos, head)
			}
		}
		var pending int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM catalog_documents_outbox_v1`).Scan(&pending); err != nil || pending > 0 {
			return fmt.Errorf("%d outbox entries pending (%v)", pending, err)
		}
		pos, err := s.redis.Get(ctx, s.keys.Position()).Int64()
		if err != nil || pos < head {
			return fmt.Errorf("redis position %d of %d (%v)", pos, head, err)
		}
		return nil
	})
}

// TestCrashEmbedded: SIGKILL at random moments, 20 times, in the embedded mode.
func TestCrashEmbedded(t *testing.T) {
	t.Parallel()
	crashTest(t, false, 20, 300*time.Millisecond)
}

// TestCrashKafka: SIGKILL at random moments, 3 times, in the Kafka mode (the relay
// keeps publishing to kfake in this process; each restarted projector rejoins its
// consumer groups).
func TestCrashKafka(t *testing.T) {
	t.Parallel()
	crashTest(t, true, 3, time.Second)
}
