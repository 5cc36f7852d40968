// Package relay publishes the event store's global log to the bus: the event store is
// the outbox, and the relay is the only writer of content.events.
//
// # Guarantees
//
//   - Nothing is lost. The relay tails the global log from its saved checkpoint and
//     moves the checkpoint only up to the watermark: the position up to which every
//     event has been acknowledged by the brokers. A relay that dies, however it dies,
//     resumes from there and republishes at most what was published after the last
//     checkpoint (CheckpointInterval's worth, plus what was in flight). Consumers are
//     idempotent, so duplicates are harmless; they are counted by nothing here but are
//     visible to consumers as repeated event ids.
//   - Per-program order. Every event is keyed by its program (PartitionKey), and each
//     key belongs to one of Workers publishing goroutines (a hash shard), which
//     publishes one event at a time and waits for its acknowledgement before the next.
//     Different programs are published concurrently: Watermill's Kafka publisher waits
//     for every message, so one goroutine would be limited to one broker round trip
//     per event.
//   - One active relay. A relay publishes only while it holds a PostgreSQL session
//     advisory lock (per Config.Name) on a dedicated connection; a second relay waits
//     on the lock and takes over the moment the first one's session ends. The
//     checkpoint is written on that same connection, so a relay that lost its session
//     can no longer move the checkpoint. (The lock needs a real session: not through a
//     transaction-pooling proxy.)
//
// A failed run (broker or database trouble) is retried by Run with a backoff; the
// lock is given up meanwhile, so a healthy standby may take over.
package relay

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
)

// Log is the part of the event store the relay reads: the global log.
// infra/eventstore/postgres.Store (and every event store adapter) implements it.
type Log interface {
	// ReadAll returns at most limit events with Position > after in position order.
	ReadAll(ctx context.Context, after int64, limit int) ([]events.Envelope, error)
	// Subscribe hands every event with Position > after to handle, in position order
	// and in batches, including events appended while it runs, until ctx ends or
	// handle fails.
	Subscribe(ctx context.Context, after int64, batchSize int, handle func(context.Context, []events.Envelope) error) error
	// HeadPosition is the position of the newest event readers can see, or 0.
	HeadPosition(ctx context.Context) (int64, error)
}

// Publisher sends messages to a topic and returns once the bus has acknowledged all
// of them, in order. It must be safe for concurrent use. Watermill publishers
// (infra/bus/kafka.NewPublisher) implement it.
type Publisher interface {
	Publish(topic string, msgs ...*message.Message) error
}

// Defaults of Config.
const (
	DefaultName               = "content"
	DefaultTopic              = "content.events"
	DefaultWorkers            = 64
	DefaultBatchSize          = 500
	DefaultMaxInFlight        = 5000
	DefaultCheckpointInterval = 250 * time.Millisecond
	DefaultMaxBackoff         = 5 * time.Second
	DefaultLagCountLimit      = 10000
)

// Config tunes a relay; the zero value of every field means its default.
type Config struct {
	// Name identifies the relay's checkpoint and lock (default DefaultName). Relays
	// with the same name are one relay: only one of them is active.
	Name string
	// Topic is where events are published (default DefaultTopic).
	Topic string
	// Workers is the number of publishing goroutines, each owning a hash shard of
	// the keys (default DefaultWorkers). Each has one event in flight at a time, and
	// measured into kfake they spend over 90% of their time waiting for the broker's
	// acknowledgement, so throughput grows with their number until the producer's
	// batching saturates; goroutines are cheap, hence the generous default.
	Workers int
	// BatchSize is how many events one read of the log returns at most
	// (default DefaultBatchSize).
	BatchSize int
	// MaxInFlight bounds the events read but not yet passed by the watermark
	// (default DefaultMaxInFlight): the memory a slow program can hold up.
	MaxInFlight int
	// CheckpointInterval is how often the watermark is saved when it moved
	// (default DefaultCheckpointInterval); when it did not, the lock connection is
	// checked instead. It bounds what a crash republishes.
	CheckpointInterval time.Duration
	// MaxBackoff caps the wait between failed runs (default DefaultMaxBackoff); the
	// wait starts at 100 ms and doubles.
	MaxBackoff time.Duration
	// LagCountLimit caps how many unpublished events Lag counts
	// (default DefaultLagCountLimit).
	LagCountLimit int
	// Logger receives the relay's operational messages (default: discarded).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	def(&c.Workers, DefaultWorkers)
	def(&c.BatchSize, DefaultBatchSize)
	def(&c.MaxInFlight, DefaultMaxInFlight)
	def(&c.LagCountLimit, DefaultLagCountLimit)
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	positive := func(name string, v int) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("relay: %s %d, want > 0", name, v))
		}
	}
	positive("workers", c.Workers)
	positive("batch size", c.BatchSize)
	positive("max in flight", c.MaxInFlight)
	positive("lag count limit", c.LagCountLimit)
	if c.MaxInFlight > 0 && c.BatchSize > c.MaxInFlight {
		errs = append(errs, fmt.Errorf("relay: batch size %d above max in flight %d", c.BatchSize, c.MaxInFlight))
	}
	if c.CheckpointInterval < 0 {
		errs = append(errs, fmt.Errorf("relay: checkpoint interval %s", c.CheckpointInterval))
	}
	if c.MaxBackoff < 0 {
		errs = append(errs, fmt.Errorf("relay: max backoff %s", c.MaxBackoff))
	}
	return errors.Join(errs...)
}

// Relay publishes the global log to the bus. Build it with New and call Run.
type Relay struct {
	db    *pgxpool.Pool
	log   Log
	pub   Publisher
	codec *events.Codec
	cfg   Config

	published atomic.Uint64 // events acknowledged by the bus, over every run

	mu         sync.Mutex
	active     bool
	tr         *tracker // of the current run, nil when not active
	checkpoint int64    // last saved by this relay
	runs       int
	lastErr    error
}

// New returns a relay that reads log, publishes with pub, decodes events with codec
// (for their keys) and keeps its checkpoint and lock in db.
func New(db *pgxpool.Pool, log Log, pub Publisher, codec *events.Codec, cfg Config) (*Relay, error) {
	var errs []error
	if db == nil {
		errs = append(errs, errors.New("relay: nil database pool"))
	}
	if log == nil {
		errs = append(errs, errors.New("relay: nil event log"))
	}
	if pub == nil {
		errs = append(errs, errors.New("relay: nil publisher"))
	}
	if codec == nil {
		errs = append(errs, errors.New("relay: nil codec"))
	}
	errs = append(errs, cfg.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Relay{db: db, log: log, pub: pub, codec: codec, cfg: cfg.withDefaults()}, nil
}

// Run relays until ctx ends, then returns ctx.Err(). A run that fails (the bus, the
// database or the lock connection failed) is logged and retried after a backoff.
func (r *Relay) Run(ctx context.Context) error {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for {
		start := time.Now()
		err := r.runOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			err = errors.New("event log subscription ended")
		}
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
		if time.Since(start) > time.Minute {
			backoff = minBackoff
		}
		r.cfg.Logger.Error("relay run failed; retrying", "relay", r.cfg.Name, "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, max(r.cfg.MaxBackoff, minBackoff))
	}
}

// runOnce takes the lock, relays until ctx ends or something fails, saves the
// watermark and gives the lock back.
func (r *Relay) runOnce(ctx context.Context) error {
	cfg := r.cfg
	conn, err := pgx.ConnectConfig(ctx, r.db.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("relay lock connection: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
		defer cancel()
		conn.Close(cctx) // ends the session: releases the lock if still held
	}()

	ok, err := tryLock(ctx, conn, cfg.Name)
	if err != nil {
		return err
	}
	if !ok {
		cfg.Logger.Info("another relay is active; waiting for its lock", "relay", cfg.Name)
		if err := waitLock(ctx, conn, cfg.Name); err != nil {
			return err
		}
	}
	from, err := loadCheckpoint(ctx, conn, cfg.Name)
	if err != nil {
		return err
	}
	cfg.Logger.Info("relay active", "relay", cfg.Name, "from", from)

	tr := newTracker(from, cfg.MaxInFlight)
	r.mu.Lock()
	r.active, r.tr, r.checkpoint = true, tr, from
	r.runs++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.active, r.tr = false, nil
		r.mu.Unlock()
	}()

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	shards := make([]chan *item, cfg.Workers)
	var workers sync.WaitGroup
	for i := range shards {
		// Never full: the tracker's slots bound the items outstanding in all shards.
		shards[i] = make(chan *item, cfg.MaxInFlight)
		workers.Go(func() { r.work(runCtx, cancel, shards[i], tr) })
	}
	cpDone := make(chan error, 1)
	go func() {
		err := r.checkpointLoop(runCtx, conn, tr, from)
		if err != nil {
			cancel(err)
		}
		cpDone <- err
	}()

	subErr := r.log.Subscribe(runCtx, from, cfg.BatchSize, func(ctx context.Context, evs []events.Envelope) error {
		for _, env := range evs {
			if err := r.dispatch(ctx, tr, shards, env); err != nil {
				return err
			}
		}
		return nil
	})
	// The first failure (a worker's, the checkpoint loop's, or the subscription's
	// own) cancelled runCtx with itself as cause; otherwise this sets it.
	cancel(subErr)
	for _, s := range shards {
		close(s)
	}
	workers.Wait()
	cpErr := <-cpDone

	// Save the watermark, even when stopping, so that a clean stop republishes only
	// the events acknowledged out of order above it. Not when the lock connection
	// failed: the lock may be someone else's by now. The statement must not be cut
	// short by ctx, which is done.
	var saveErr error
	w, inFlight := tr.state()
	if w > r.Status().Checkpoint && cpErr == nil {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
		saveErr = saveCheckpoint(sctx, conn, cfg.Name, w)
		scancel()
		if saveErr == nil {
			r.setCheckpoint(w)
		}
	}
	cfg.Logger.Info("relay stopped", "relay", cfg.Name, "watermark", w, "abandoned_in_flight", inFlight)

	if ctx.Err() != nil {
		return ctx.Err()
	}
	cause := context.Cause(runCtx)
	if subErr == nil && errors.Is(cause, context.Canceled) {
		cause = errors.New("event log subscription ended")
	}
	return errors.Join(cause, saveErr)
}

// dispatch hands env to the worker that owns its key, once the window has room.
func (r *Relay) dispatch(ctx context.Context, tr *tracker, shards []chan *item, env events.Envelope) error {
	select {
	case tr.slots <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	key := PartitionKey(r.codec, env)
	msg, err := NewMessage(env, key)
	if err != nil {
		return err
	}
	it := &item{position: env.Position, key: key, msg: msg, eventID: env.EventID}
	tr.add(it)
	select {
	case shards[shardOf(key, len(shards))] <- it:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// shardOf is the worker that owns key.
func shardOf(key string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// work publishes the items of one shard one at a time, each after the previous one
// was acknowledged. After a failure (its own or another worker's) it publishes
// nothing more, so no key can get ahead of an event that failed.
func (r *Relay) work(ctx context.Context, fail context.CancelCauseFunc, items <-chan *item, tr *tracker) {
	for it := range items {
		if ctx.Err() != nil {
			continue // drain: the next run reads these again
		}
		if err := r.pub.Publish(r.cfg.Topic, it.msg); err != nil {
			fail(fmt.Errorf("publish event %s (position %d): %w", it.eventID, it.position, err))
			continue
		}
		tr.ack(it)
		r.published.Add(1)
	}
}

// checkpointLoop saves the watermark every CheckpointInterval when it moved, and
// checks the lock connection when it did not, until ctx ends. An error means the
// relay may have lost its lock: the run must stop.
func (r *Relay) checkpointLoop(ctx context.Context, conn *pgx.Conn, tr *tracker, saved int64) error {
	t := time.NewTicker(r.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// Statements get their own deadline, not ctx: cancelling a statement would
		// close the connection, and with it the lock the final save needs.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
		var err error
		if w, _ := tr.state(); w > saved {
			if err = saveCheckpoint(sctx, conn, r.cfg.Name, w); err == nil {
				saved = w
				r.setCheckpoint(w)
			}
		} else if err = conn.Ping(sctx); err != nil {
			err = fmt.Errorf("relay lock connection lost: %w", err)
		}
		cancel()
		if err != nil {
			return err
		}
	}
}

func (r *Relay) setCheckpoint(pos int64) {
	r.mu.Lock()
	r.checkpoint = max(r.checkpoint, pos)
	r.mu.Unlock()
}
