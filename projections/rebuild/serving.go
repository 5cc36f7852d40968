package rebuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/projections/runtime"
)

// ErrNotServing: no version of the projection serves yet (it has never run).
var ErrNotServing = errors.New("no version of the projection serves yet")

// Querier is what ServingVersion reads through: a pool, a connection or a
// transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ServingVersion returns the version of the projection called name that answers
// reads, or ErrNotServing. The query side names its tables, Redis prefix and search
// index after it (catalog_programs_v<n>, mm:catalog:v<n>:, programs_v<n>).
//
// Read in the same snapshot as the data (a REPEATABLE READ, read-only transaction),
// the answer is exact: the version and its rows belong to one instant, so a reader
// never goes back in time across a switch, and a read-your-writes check against
// the serving checkpoint holds for the rows read. Read separately (or from a
// Watcher), a reader may read the replaced version for a moment after the switch:
// still consistent (frozen at the switch, never ahead of the new version), and
// kept for the grace period.
func ServingVersion(ctx context.Context, q Querier, name string) (int, error) {
	var v int
	err := q.QueryRow(ctx, `SELECT version FROM projection_checkpoints WHERE name = $1 AND serving`, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("serving version of %s: %w", name, ErrNotServing)
	}
	if err != nil {
		return 0, fmt.Errorf("serving version of %s: %w", name, err)
	}
	return v, nil
}

// Watcher keeps the serving version of every projection in memory, for query
// instances that name their sinks per request: it LISTENs on runtime.NotifyChannel,
// where a cut-over announces the new serving version in its own transaction
// ({"name":"catalog","version":2,"position":…,"serving":true}), and reloads every
// serving version whenever its listener (re)connects and every reload interval, so
// a lost notification delays a switch by at most that. Hooks registered with
// OnSwitch run after each change it sees (switch table names, warm caches), in
// every process that runs a Watcher — unlike Manager.OnSwitch, which runs only in
// the process that switched.
type Watcher struct {
	pool   *pgxpool.Pool
	log    *slog.Logger
	reload time.Duration

	mu       sync.Mutex
	versions map[string]int
	hooks    []func(ctx context.Context, name string, from, to int)
	loaded   chan struct{}
	hookWG   sync.WaitGroup
}

// NewWatcher returns a Watcher over pool; logger may be nil (slog.Default()).
func NewWatcher(pool *pgxpool.Pool, logger *slog.Logger) (*Watcher, error) {
	if pool == nil {
		return nil, errors.New("serving watcher: nil pool")
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Watcher{pool: pool, log: logger, reload: 10 * time.Second, versions: map[string]int{}, loaded: make(chan struct{})}, nil
}

// OnSwitch registers fn, called with the old and the new serving version after
// each switch the Watcher sees (from is 0 when the projection had none). Hooks run
// one after the other on a goroutine of their own, never blocking the listener.
func (w *Watcher) OnSwitch(fn func(ctx context.Context, name string, from, to int)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hooks = append(w.hooks, fn)
}

// Version returns the serving version of name as last seen, or fallback when none
// is known (before the first load, or a projection that never ran).
func (w *Watcher) Version(name string, fallback int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v, ok := w.versions[name]; ok {
		return v
	}
	return fallback
}

// Loaded is closed once the serving versions have been read for the first time.
func (w *Watcher) Loaded() <-chan struct{} { return w.loaded }

// Run keeps the listener connected until ctx ends, then waits for running hooks
// and returns nil.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.hookWG.Wait()
	for attempt := 0; ; attempt++ {
		err := w.listen(ctx, func() { attempt = 0 })
		if ctx.Err() != nil {
			return nil
		}
		w.log.Warn("serving watcher lost its listener, reconnecting", "error", err)
		if !sleep(ctx, backoff(attempt)) {
			return nil
		}
	}
}

func (w *Watcher) listen(ctx context.Context, connected func()) error {
	pc, err := w.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire listener connection: %w", err)
	}
	conn := pc.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+ident(runtime.NotifyChannel)); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	connected()
	if err := w.load(ctx, conn); err != nil {
		return err
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, w.reload)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				if err := w.load(ctx, conn); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("wait for notification: %w", err)
		}
		var msg runtime.Notification
		if json.Unmarshal([]byte(n.Payload), &msg) != nil || !msg.Serving || msg.Name == "" {
			continue
		}
		w.set(ctx, msg.Name, msg.Version)
	}
}

func (w *Watcher) load(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, `SELECT name, version FROM projection_checkpoints WHERE serving`)
	if err != nil {
		return fmt.Errorf("load serving versions: %w", err)
	}
	var (
		name string
		v    int
	)
	seen := map[string]int{}
	if _, err := pgx.ForEachRow(rows, []any{&name, &v}, func() error {
		seen[name] = v
		return nil
	}); err != nil {
		return fmt.Errorf("load serving versions: %w", err)
	}
	for name, v := range seen {
		w.set(ctx, name, v)
	}
	w.mu.Lock()
	select {
	case <-w.loaded:
	default:
		close(w.loaded)
	}
	w.mu.Unlock()
	return nil
}

// set records v as name's serving version and fires the hooks if it changed.
func (w *Watcher) set(ctx context.Context, name string, v int) {
	w.mu.Lock()
	from, known := w.versions[name]
	if known && from == v {
		w.mu.Unlock()
		return
	}
	w.versions[name] = v
	hooks := slices.Clone(w.hooks)
	first := !known
	w.mu.Unlock()
	if first {
		select {
		case <-w.loaded: // a projection that started serving after the first load
		default:
			return // the first load: nothing switched
		}
	}
	w.log.Info("serving projection version changed", "projection", name, "from", from, "to", v)
	w.hookWG.Go(func() {
		for _, h := range hooks {
			func() {
				defer func() {
					if r := recover(); r != nil {
						w.log.Error("serving watcher: hook panicked", "projection", name, "panic", fmt.Sprint(r))
					}
				}()
				h(ctx, name, from, v)
			}()
		}
	})
}
