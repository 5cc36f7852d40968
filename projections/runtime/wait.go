package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NotifyChannel is the PostgreSQL channel on which the runtime announces every
// committed checkpoint, in the batch's own transaction (so only after the commit).
// A rebuild's cut-over must announce the newly serving version on it too.
const NotifyChannel = "mediamesh_projections"

// Notification is the JSON payload sent on NotifyChannel.
type Notification struct {
	Name     string `json:"name"`
	Version  int    `json:"version"`
	Position int64  `json:"position"`
	Serving  bool   `json:"serving"`
}

func (n Notification) encode() string {
	b, _ := json.Marshal(n) // a struct of plain fields always marshals
	return string(b)
}

// Waiter implements WaitForPosition: it LISTENs on NotifyChannel on one dedicated
// connection and wakes the callers waiting for a projection to reach a position.
// It needs no running Runtime in its process, so a query-only role can use it.
// Run must be running: until its listener is connected, WaitForPosition waits for
// it (bounded by the caller's context).
type Waiter struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu    sync.Mutex
	ready chan struct{} // closed while the listener is connected
	subs  map[string]map[*sub]struct{}
}

type sub struct {
	pos     int64
	done    chan struct{} // closed when a notification reached pos
	recheck chan struct{} // the listener (re)connected: notifications may be lost
}

// NewWaiter returns a Waiter over pool; logger may be nil (slog.Default()).
func NewWaiter(pool *pgxpool.Pool, logger *slog.Logger) (*Waiter, error) {
	if pool == nil {
		return nil, errors.New("projection waiter: nil pool")
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Waiter{pool: pool, log: logger, ready: make(chan struct{}), subs: map[string]map[*sub]struct{}{}}, nil
}

// Run keeps the listener connected until ctx ends, reconnecting with backoff, and
// returns nil then.
func (w *Waiter) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := w.listen(ctx, func() { attempt = 0 })
		if ctx.Err() != nil {
			return nil
		}
		w.log.Warn("projection waiter lost its listener, reconnecting", "error", err)
		if !sleepBackoff(ctx, attempt, 50*time.Millisecond, 5*time.Second) {
			return nil
		}
	}
}

func (w *Waiter) listen(ctx context.Context, connected func()) error {
	pc, err := w.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire listener connection: %w", err)
	}
	conn := pc.Hijack() // LISTEN state must never go back to the pool
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	connected()
	w.setReady(true)
	defer w.setReady(false)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		var msg Notification
		if err := json.Unmarshal([]byte(n.Payload), &msg); err != nil || !msg.Serving {
			continue
		}
		w.dispatch(msg.Name, msg.Position)
	}
}

func (w *Waiter) setReady(ready bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.ready:
		if !ready {
			w.ready = make(chan struct{})
		}
	default:
		if ready {
			close(w.ready)
			for _, set := range w.subs {
				for s := range set {
					select {
					case s.recheck <- struct{}{}:
					default:
					}
				}
			}
		}
	}
}

func (w *Waiter) dispatch(name string, pos int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := range w.subs[name] {
		if s.pos <= pos {
			close(s.done)
			delete(w.subs[name], s)
		}
	}
}

// WaitForPosition returns nil once the serving version of the projection called
// name has applied the event at global position pos (its checkpoint is at or above
// pos), or ctx's error wrapped when ctx ends first. It does not poll: it checks the
// checkpoint once, then sleeps until a notification (or a listener reconnect) says
// to look again.
func (w *Waiter) WaitForPosition(ctx context.Context, name string, pos int64) error {
	if pos <= 0 {
		return nil
	}
	s := &sub{pos: pos, done: make(chan struct{}), recheck: make(chan struct{}, 1)}
	w.mu.Lock()
	if w.subs[name] == nil {
		w.subs[name] = map[*sub]struct{}{}
	}
	w.subs[name][s] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.subs[name], s)
		w.mu.Unlock()
	}()
	for {
		w.mu.Lock()
		ready := w.ready
		w.mu.Unlock()
		select {
		case <-ready:
		case <-s.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to reach position %d: listener not connected: %w", name, pos, ctx.Err())
		}
		// Registered before reading, so a commit in between still wakes us.
		var cur int64
		err := w.pool.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = $1 AND serving`, name).Scan(&cur)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("wait for %s to reach position %d: %w", name, pos, err)
		}
		if cur >= pos {
			return nil
		}
		select {
		case <-s.done:
			return nil
		case <-s.recheck:
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to reach position %d (at %d): %w", name, pos, cur, ctx.Err())
		}
	}
}
