// Package runtime runs projections: it feeds each one batches of events and records
// its progress in the same PostgreSQL transaction as its writes. Events come from one
// of two sources:
//
//   - The event store's global log (the embedded mode, MEDIAMESH_BUS=postgres): each
//     projection reads it from its own checkpoint, in global position order. The
//     checkpoint is a watermark: everything at or below it is applied.
//   - A partitioned stream (the Kafka mode, MEDIAMESH_BUS=kafka, Options.Stream): each
//     projection consumes content.events in a consumer group of its own
//     (ConsumerName: "catalog.v1"). Progress is the stream's own (Kafka's committed
//     offsets, per partition), acknowledged only after the batch's transaction
//     committed; the checkpoint row then holds the highest global position applied
//     so far, for status only: partitions are consumed independently, so events
//     below it may still be on their way. Exactly-once in effect comes from the
//     sinks' row version guards, never from the checkpoint.
//
// The checkpoint row also keeps the version's replay watermark (replayed_through):
// the position up to which it was fed from the global log in order. A stream
// consumer skips the events at or below it.
//
// Decisions:
//
//   - A projection's writes and its new checkpoint commit in one transaction, so a
//     crash at any instant loses or doubles nothing: the next run starts from the
//     last committed checkpoint. Sinks are also idempotent by themselves (guarded by
//     the program stream version stored on each row), so an event applied twice,
//     for instance by a rebuild or a Kafka redelivery, changes nothing.
//   - Each batch transaction locks its checkpoint row (SELECT … FOR UPDATE) and
//     skips events at or below the committed position, so two runtimes of the same
//     projection (two projector processes) serialize instead of interleaving.
//   - The ordered mode raises replayed_through with the position, but only while
//     the two are equal: once a stream consumer has moved the position past it
//     (the position is then no watermark), an ordered batch still running, e.g. a
//     rebuild's replay in its last moments, leaves it alone. So replayed_through is
//     always a true watermark, and the stream mode skips the events at or below it
//     without applying them (still acknowledging them): a rebuilt version, whose
//     new consumer group starts at the oldest offset, does not apply the topic's
//     whole retention again after its switch; its live events do not wait behind
//     it. Whole stream batches at or below the watermark read when consuming
//     started are acknowledged without a transaction. A version never fed in order
//     has 0 and skips nothing.
//   - Batches hold up to Options.BatchSize events (1,000) or what arrived within
//     Options.BatchWait (50 ms) of the first buffered event. Batch transactions are
//     short (statements pipelined by the projection): a transaction that has written
//     holds back the event store's readers, which read below the oldest running
//     transaction id.
//   - Errors are classified. Connection, serialization, resource, operator and schema
//     errors are transient: the batch is retried with exponential backoff for as long
//     as it takes (a schema error is a deploy problem, not the event's). Any other
//     error isolates the batch: its events are applied one per transaction, and an
//     event that still fails after Options.MaxAttempts tries (or at once, when the
//     projection says it is poison, e.g. it cannot be decoded) is written to
//     projection_dead_letters and the projection moves on.
//   - Later events of a stream that has a dead letter are parked as dead letters too
//     (never applied out of order), so Replay, after the cause is fixed, re-applies a
//     stream's events in their order and the read model ends as if nothing failed.
//   - After each committed batch the runtime NOTIFYs NotifyChannel; Waiter turns that
//     into WaitForPosition for read-your-writes, in this process or any other. In the
//     Kafka mode a position is not a watermark (see above): an exact read-your-writes
//     check compares the write's stream version with the read model's row version.
//   - In the Kafka mode the batches of all partitions of one projection are applied
//     one transaction at a time (in this process by one applier goroutine, across
//     processes by the checkpoint row lock), and batches that arrive while a
//     transaction runs are merged into the next one. Serial transactions keep the
//     cross-program aggregates (category counts) exact without locking them row by
//     row, and merging keeps commits few when many partitions have a backlog; the
//     apply path is set-wise and fast enough (infra/bench, suite "project") that
//     partitions are not needed for write parallelism on one database.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
)

// Source is what the runtime needs of the event store's global log.
type Source interface {
	// ReadAll returns up to limit events with Position > after, ascending.
	ReadAll(ctx context.Context, after int64, limit int) ([]events.Envelope, error)
	// Subscribe calls handle with every event with Position > after exactly once, in
	// order, in batches of at most batchSize; it blocks until ctx ends or handle
	// returns an error.
	Subscribe(ctx context.Context, after int64, batchSize int, handle func(context.Context, []events.Envelope) error) error
	// HeadPosition returns the position of the newest readable event (0 when empty).
	HeadPosition(ctx context.Context) (int64, error)
}

// Stream is a partitioned, acknowledged delivery of the global log: the Kafka mode's
// content.events (infra/bus/kafka.Source implements it).
type Stream interface {
	// Consume delivers batches to handle until ctx ends, as consumer group (or
	// equivalent) name. A batch holds events of one partition in that partition's
	// order (so each program's events in stream order); batches of different
	// partitions may be handed over concurrently. A batch is acknowledged only once
	// handle returned nil for it; when handle fails, the batch and what follows it on
	// its partition are delivered again later (after a rebalance, a restart, or at
	// once). Redelivery of acknowledged events is allowed too (a rebalance).
	Consume(ctx context.Context, name string, handle func(context.Context, []events.Envelope) error) error
}

// ConsumerName is the stable name under which a projection version consumes a
// Stream ("catalog.v1"): its consumer group is named after it, so a rebuilt version
// consumes with a group of its own.
func ConsumerName(p Projection) string { return fmt.Sprintf("%s.v%d", p.Name(), p.Version()) }

// EventCounter is optionally implemented by a Source that can count events above a
// position without reading them; Status uses it for lag_events when present.
type EventCounter interface {
	// CountAfter counts events with Position > after, stopping at limit.
	CountAfter(ctx context.Context, after int64, limit int) (int64, error)
}

// Projection is a named, versioned set of PostgreSQL sinks fed from the event log.
type Projection interface {
	// Name is stable across versions ("catalog").
	Name() string
	// Version is bumped when the sinks' shape or meaning changes; every sink is
	// named with it ("catalog_programs_v1") so a rebuild writes beside the live one.
	Version() int
	// Sinks lists the tables the projection writes.
	Sinks() []string
	// Apply writes the effect of batch (ascending positions) in tx. It must be
	// idempotent per event and must not commit. It returns an error wrapping a
	// *PoisonError for an event that can never be applied (see Poison).
	Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error
}

// Options tune the runtime; zero values take the defaults.
type Options struct {
	// BatchSize is the most events applied in one transaction (default 1,000).
	BatchSize int
	// BatchWait is how long the first buffered event waits for more (default 50 ms).
	BatchWait time.Duration
	// MinBackoff and MaxBackoff bound the exponential retry delay (50 ms, 5 s).
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts is how often a single event is tried before it is dead-lettered
	// when its error is not transient (default 3).
	MaxAttempts int
	// LagCap caps the count behind lag_events (default 1,000): counting is cheap
	// only while bounded.
	LagCap int
	// Logger receives retries and dead letters (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock behind lag_seconds (default time.Now).
	Now func() time.Time
	// Stream, when set, is where Run reads events (the Kafka mode); the Source then
	// only answers Status. Nil: Run subscribes to the Source's global log.
	Stream Stream
}

func (o Options) withDefaults() Options {
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.BatchWait <= 0 {
		o.BatchWait = 50 * time.Millisecond
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 50 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	if o.LagCap <= 0 {
		o.LagCap = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Frozen is the checkpoint position of a version a rebuild's switch replaced
// (projections/rebuild): the runtime applies nothing more to it, whatever
// arrives, in either mode — so its sinks stay exactly as of the switch while
// queries that have not switched yet still read them. (From the global log the
// watermark alone would skip everything; a Stream's batches are filtered only by
// the replay watermark, hence the explicit check.) Its batches are still acknowledged.
const Frozen int64 = math.MaxInt64

// errCheckpointMissing: the checkpoint row is gone; transient, it is recreated.
var errCheckpointMissing = errors.New("projection checkpoint row missing")

// ErrUnknownProjection is returned for a projection name the runtime does not run.
var ErrUnknownProjection = errors.New("unknown projection")

// Runtime feeds a set of projections from a Source. Build it with New; Run applies
// events, while Status, DeadLetters and Replay work whether or not Run is running
// (the CLI builds a Runtime only to call them).
type Runtime struct {
	pool  *pgxpool.Pool
	src   Source
	projs []Projection
	opts  Options
	log   *slog.Logger
	// ordered: events arrive in global position order (the Source), so the
	// checkpoint is a watermark and events at or below it are skipped. Otherwise
	// (a Stream) the checkpoint is the highest position applied.
	ordered bool
}

// New returns a runtime for projs. Each (name, version) may appear once.
func New(pool *pgxpool.Pool, src Source, projs []Projection, opts Options) (*Runtime, error) {
	if pool == nil {
		return nil, errors.New("projection runtime: nil pool")
	}
	if src == nil {
		return nil, errors.New("projection runtime: nil source")
	}
	seen := map[string]bool{}
	for _, p := range projs {
		if p == nil {
			return nil, errors.New("projection runtime: nil projection")
		}
		if p.Name() == "" || p.Version() < 1 {
			return nil, fmt.Errorf("projection runtime: projection %q version %d: need a name and a version >= 1", p.Name(), p.Version())
		}
		key := fmt.Sprintf("%s/%d", p.Name(), p.Version())
		if seen[key] {
			return nil, fmt.Errorf("projection runtime: projection %s registered twice", key)
		}
		seen[key] = true
	}
	opts = opts.withDefaults()
	return &Runtime{pool: pool, src: src, projs: projs, opts: opts, log: opts.Logger, ordered: opts.Stream == nil}, nil
}

// Run applies events to every projection until ctx ends, then returns nil. It
// returns an error only when a projection cannot start (its checkpoint cannot be
// created for a reason other than a transient one); everything after that is
// retried or dead-lettered.
func (r *Runtime) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(r.projs))
	for i, p := range r.projs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.runProjection(ctx, p)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *Runtime) runProjection(ctx context.Context, p Projection) error {
	var pos, replayed int64
	for attempt := 0; ; attempt++ {
		var err error
		pos, replayed, err = r.ensureCheckpoint(ctx, p)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if classify(err) != kindTransient {
			return fmt.Errorf("start projection %s v%d: %w", p.Name(), p.Version(), err)
		}
		r.log.Warn("projection checkpoint unavailable, retrying", "projection", p.Name(), "version", p.Version(), "error", err)
		if !r.sleep(ctx, attempt) {
			return nil
		}
	}
	if !r.ordered {
		return r.runStream(ctx, p, replayed)
	}
	for attempt := 0; ; attempt++ {
		before := pos
		err := r.consume(ctx, p, &pos)
		if ctx.Err() != nil {
			return nil
		}
		if pos > before {
			attempt = 0 // it worked for a while: start the backoff over
		}
		r.log.Warn("projection subscription ended, resubscribing", "projection", p.Name(), "version", p.Version(), "position", pos, "error", err)
		if !r.sleep(ctx, attempt) {
			return nil
		}
	}
}

// runStream consumes the Stream as the projection's consumer until ctx ends. The
// partitions' batches are applied by one goroutine, one transaction at a time (see
// the package documentation); batches that wait while a transaction runs are
// merged into the next one (up to mergeLimit events), so that a backlog on many
// partitions costs few commits. A batch is acknowledged (handle returns nil) after
// the commit of the transaction that applied it, or at once when all its events
// are at or below replayed, the version's replay watermark when it started.
func (r *Runtime) runStream(ctx context.Context, p Projection, replayed int64) error {
	queue := make(chan streamBatch)
	applierDone := make(chan struct{})
	go func() {
		defer close(applierDone)
		r.applyStream(ctx, p, queue)
	}()
	defer func() { <-applierDone }()
	handle := func(hctx context.Context, batch []events.Envelope) error {
		if len(batch) == 0 || maxPosition(batch) <= replayed {
			// Applied by the replay: the watermark only grows while the row
			// lives, so no transaction is needed to know it.
			return nil
		}
		b := streamBatch{events: batch, done: make(chan error, 1)}
		select {
		case queue <- b:
		case <-hctx.Done():
			return hctx.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case err := <-b.done:
			return err
		case <-hctx.Done():
			// The partition was revoked: the batch may still be applied, which is
			// harmless; it is not acknowledged, so its next owner gets it again.
			return hctx.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := r.opts.Stream.Consume(ctx, ConsumerName(p), handle)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			attempt = 0
		}
		r.log.Warn("projection stream ended, consuming again", "projection", p.Name(), "version", p.Version(), "error", err)
		if !r.sleep(ctx, attempt) {
			return nil
		}
	}
}

// streamBatch is one partition's batch waiting to be applied.
type streamBatch struct {
	events []events.Envelope
	done   chan error
}

// applyStream applies queued batches until ctx ends, merging what waits.
func (r *Runtime) applyStream(ctx context.Context, p Projection, queue <-chan streamBatch) {
	limit := mergeLimit * r.opts.BatchSize
	var carry *streamBatch
	for {
		var group []streamBatch
		if carry != nil {
			group, carry = append(group, *carry), nil
		} else {
			select {
			case b := <-queue:
				group = append(group, b)
			case <-ctx.Done():
				return
			}
		}
		n := len(group[0].events)
	merging:
		for n < limit {
			select {
			case b := <-queue:
				if n+len(b.events) > limit {
					carry = &b
					break merging
				}
				group = append(group, b)
				n += len(b.events)
			default:
				break merging
			}
		}
		merged := group[0].events
		if len(group) > 1 {
			merged = make([]events.Envelope, 0, n)
			for _, b := range group {
				merged = append(merged, b.events...)
			}
		}
		_, err := r.applyBatch(ctx, p, merged)
		for _, b := range group {
			b.done <- err
		}
		if err != nil && carry != nil {
			carry.done <- err
			carry = nil
		}
	}
}

// mergeLimit bounds a merged stream transaction, in batches of Options.BatchSize.
const mergeLimit = 4

// consume subscribes from *pos and applies what arrives until the subscription
// ends or ctx is done; *pos follows every committed batch.
func (r *Runtime) consume(ctx context.Context, p Projection, pos *int64) error {
	subCtx, cancel := context.WithCancel(ctx)
	feed := make(chan []events.Envelope, 1)
	subErr := make(chan error, 1)
	go func() {
		subErr <- r.src.Subscribe(subCtx, *pos, r.opts.BatchSize, func(ctx context.Context, batch []events.Envelope) error {
			if len(batch) == 0 {
				return nil
			}
			select {
			case feed <- batch:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	subDone := false
	defer func() {
		cancel()
		if !subDone {
			<-subErr
		}
	}()

	var buf []events.Envelope
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	flush := func(all bool) error {
		for len(buf) > 0 && (all || len(buf) >= r.opts.BatchSize) {
			n := min(len(buf), r.opts.BatchSize)
			last, err := r.applyBatch(ctx, p, buf[:n])
			if err != nil {
				return err
			}
			*pos = max(*pos, last)
			buf = append(buf[:0:0], buf[n:]...)
		}
		return nil
	}
	for {
		if err := flush(false); err != nil {
			return err
		}
		select {
		case batch := <-feed:
			if len(buf) == 0 {
				timer.Reset(r.opts.BatchWait)
			}
			buf = appendAfter(buf, batch, *pos)
		case <-timer.C:
			if err := flush(true); err != nil {
				return err
			}
		case err := <-subErr:
			subDone = true
			// What Subscribe handed over before it ended is still ours to apply.
			for drained := false; !drained; {
				select {
				case batch := <-feed:
					buf = appendAfter(buf, batch, *pos)
				default:
					drained = true
				}
			}
			if ferr := flush(true); ferr != nil {
				return ferr
			}
			if err == nil {
				err = errors.New("subscription ended")
			}
			return fmt.Errorf("subscribe after %d: %w", *pos, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// appendAfter appends the events of batch that are above both after and the last
// buffered position, so buf stays strictly ascending whatever the source redelivers.
func appendAfter(buf, batch []events.Envelope, after int64) []events.Envelope {
	last := after
	if len(buf) > 0 {
		last = max(last, buf[len(buf)-1].Position)
	}
	for _, e := range batch {
		if e.Position > last {
			buf = append(buf, e)
			last = e.Position
		}
	}
	return buf
}

// applyBatch commits batch, retrying transient errors, and isolates the batch into
// single events when an error is not transient. It returns the position the
// checkpoint reached; it fails only when ctx ends.
func (r *Runtime) applyBatch(ctx context.Context, p Projection, batch []events.Envelope) (int64, error) {
	last := maxPosition(batch)
	for attempt := 0; ; attempt++ {
		err := r.commitBatch(ctx, p, batch)
		if err == nil {
			return last, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		kind := classify(err)
		if i := poisonIndex(err, batch); kind == kindPoison && i >= 0 {
			// The projection named the event: no need to isolate the others.
			return last, r.splitAround(ctx, p, batch, i, err)
		}
		if kind != kindTransient {
			r.log.Warn("projection batch failed, applying its events one by one", "projection", p.Name(), "version", p.Version(),
				"first", batch[0].Position, "last", batch[len(batch)-1].Position, "error", err)
			for _, e := range batch {
				if err := r.applySingle(ctx, p, e); err != nil {
					return 0, err
				}
			}
			return last, nil
		}
		if errors.Is(err, errCheckpointMissing) {
			// Deleted under us (an operator resetting the projection): recreate it at
			// 0. This process goes on from where it is; a restarted one replays from
			// the start, which changes nothing that is already applied.
			if _, _, err := r.ensureCheckpoint(ctx, p); err != nil {
				r.log.Warn("recreate projection checkpoint", "projection", p.Name(), "error", err)
			}
		}
		r.log.Warn("projection batch failed, retrying", "projection", p.Name(), "version", p.Version(), "attempt", attempt+1, "error", err)
		if !r.sleep(ctx, attempt) {
			return 0, ctx.Err()
		}
	}
}

// splitAround applies the events before batch[i], dead-letters batch[i] and
// applies the events after it.
func (r *Runtime) splitAround(ctx context.Context, p Projection, batch []events.Envelope, i int, cause error) error {
	if i > 0 {
		if _, err := r.applyBatch(ctx, p, batch[:i]); err != nil {
			return err
		}
	}
	if err := r.deadLetter(ctx, p, batch[i], cause, 1); err != nil {
		return err
	}
	if i+1 < len(batch) {
		if _, err := r.applyBatch(ctx, p, batch[i+1:]); err != nil {
			return err
		}
	}
	return nil
}

// applySingle commits one event or, once it has proved poison, its dead letter.
func (r *Runtime) applySingle(ctx context.Context, p Projection, e events.Envelope) error {
	failures := 0
	for attempt := 0; ; attempt++ {
		err := r.commitBatch(ctx, p, []events.Envelope{e})
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch classify(err) {
		case kindPoison:
			return r.deadLetter(ctx, p, e, err, failures+1)
		case kindEvent:
			failures++
			if failures >= r.opts.MaxAttempts {
				return r.deadLetter(ctx, p, e, err, failures)
			}
		}
		r.log.Warn("projection event failed, retrying", "projection", p.Name(), "version", p.Version(), "position", e.Position, "attempt", attempt+1, "error", err)
		if !r.sleep(ctx, attempt) {
			return ctx.Err()
		}
	}
}

// deadLetter records e as a dead letter and moves the checkpoint past it.
func (r *Runtime) deadLetter(ctx context.Context, p Projection, e events.Envelope, cause error, attempts int) error {
	r.log.Error("projection event dead-lettered", "projection", p.Name(), "version", p.Version(), "position", e.Position,
		"event_id", e.EventID, "type", e.Type, "stream", e.StreamID, "error", cause)
	for attempt := 0; ; attempt++ {
		err := r.inCheckpointTx(ctx, p, func(tx pgx.Tx, row checkpointRow) (int64, error) {
			cp := row.position
			if cp == Frozen || (r.ordered && e.Position <= cp) || e.Position <= row.replayedThrough {
				return cp, nil
			}
			if err := insertDeadLetter(ctx, tx, p, e, cause.Error(), false, attempts); err != nil {
				return 0, err
			}
			return max(cp, e.Position), nil
		})
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Warn("write dead letter failed, retrying", "projection", p.Name(), "position", e.Position, "error", err)
		if !r.sleep(ctx, attempt) {
			return ctx.Err()
		}
	}
}

// commitBatch applies the events of batch in one transaction with the new
// checkpoint (in order mode only those above the committed checkpoint, in stream
// mode only those above the replay watermark); events of parked streams become
// dead letters.
func (r *Runtime) commitBatch(ctx context.Context, p Projection, batch []events.Envelope) error {
	return r.inCheckpointTx(ctx, p, func(tx pgx.Tx, row checkpointRow) (int64, error) {
		cp := row.position
		if cp == Frozen {
			return cp, nil // a replaced version: its sinks stay as of its switch
		}
		todo := batch
		if r.ordered {
			for len(todo) > 0 && todo[0].Position <= cp {
				todo = todo[1:]
			}
		} else {
			todo = above(todo, row.replayedThrough)
		}
		if len(todo) == 0 {
			return cp, nil
		}
		parked, err := parkedStreams(ctx, tx, p, todo)
		if err != nil {
			return 0, err
		}
		live := todo
		if len(parked) > 0 {
			live = make([]events.Envelope, 0, len(todo))
			for _, e := range todo {
				if first, ok := parked[e.StreamID]; ok && first < e.Position {
					msg := fmt.Sprintf("parked: stream %s has a dead letter at position %d", e.StreamID, first)
					if err := insertDeadLetter(ctx, tx, p, e, msg, true, 0); err != nil {
						return 0, err
					}
					continue
				}
				live = append(live, e)
			}
		}
		if len(live) > 0 {
			if err := p.Apply(ctx, tx, live); err != nil {
				return 0, fmt.Errorf("apply positions %d..%d: %w", live[0].Position, live[len(live)-1].Position, err)
			}
		}
		return max(cp, maxPosition(todo)), nil
	})
}

// above returns the events of batch above watermark (batch itself when none is at
// or below it).
func above(batch []events.Envelope, watermark int64) []events.Envelope {
	i := 0
	for i < len(batch) && batch[i].Position > watermark {
		i++
	}
	if i == len(batch) {
		return batch
	}
	out := append(make([]events.Envelope, 0, len(batch)), batch[:i]...)
	for _, e := range batch[i+1:] {
		if e.Position > watermark {
			out = append(out, e)
		}
	}
	return out
}

// maxPosition is the highest position of batch (the last one in order mode).
func maxPosition(batch []events.Envelope) int64 {
	var m int64
	for _, e := range batch {
		m = max(m, e.Position)
	}
	return m
}

// checkpointRow is a projection's checkpoint row as a batch transaction locked it.
type checkpointRow struct {
	position        int64
	replayedThrough int64 // the replay watermark (see the package documentation)
	serving         bool
}

// inCheckpointTx runs fn in a transaction holding the projection's checkpoint row
// lock; fn returns the new checkpoint, which is written (and notified) when it
// moved. In the ordered mode the replay watermark moves with it while it is one.
func (r *Runtime) inCheckpointTx(ctx context.Context, p Projection, fn func(tx pgx.Tx, row checkpointRow) (int64, error)) error {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	var row checkpointRow
	err = tx.QueryRow(ctx, `SELECT position, replayed_through, serving FROM projection_checkpoints WHERE name = $1 AND version = $2 FOR UPDATE`,
		p.Name(), p.Version()).Scan(&row.position, &row.replayedThrough, &row.serving)
	if errors.Is(err, pgx.ErrNoRows) {
		return errCheckpointMissing
	}
	if err != nil {
		return fmt.Errorf("lock checkpoint: %w", err)
	}
	cp := row.position
	next, err := fn(tx, row)
	if err != nil {
		return err
	}
	if next > cp {
		// The position is a watermark only while nothing but ordered batches moved
		// it (then it equals replayed_through): only then does the watermark follow.
		replayed := row.replayedThrough
		if r.ordered && cp == replayed {
			replayed = next
		}
		if _, err := tx.Exec(ctx, `UPDATE projection_checkpoints SET position = $3, replayed_through = $4, updated_at = now() WHERE name = $1 AND version = $2`,
			p.Name(), p.Version(), next, replayed); err != nil {
			return fmt.Errorf("save checkpoint: %w", err)
		}
		payload := Notification{Name: p.Name(), Version: p.Version(), Position: next, Serving: row.serving}.encode()
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, payload); err != nil {
			return fmt.Errorf("notify checkpoint: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// ensureCheckpoint creates the projection's checkpoint row when missing and returns
// its position and replay watermark. The first version of a name to get a row
// serves reads.
func (r *Runtime) ensureCheckpoint(ctx context.Context, p Projection) (pos, replayed int64, err error) {
	// ON CONFLICT DO NOTHING without a target also absorbs the partial unique index
	// on serving, when another version of the name already serves.
	if _, err := r.pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, version, serving)
		SELECT $1, $2, NOT EXISTS (SELECT 1 FROM projection_checkpoints WHERE name = $1 AND serving)
		ON CONFLICT DO NOTHING`, p.Name(), p.Version()); err != nil {
		return 0, 0, fmt.Errorf("create checkpoint: %w", err)
	}
	if _, err := r.pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, version, serving) VALUES ($1, $2, false)
		ON CONFLICT DO NOTHING`, p.Name(), p.Version()); err != nil {
		return 0, 0, fmt.Errorf("create checkpoint: %w", err)
	}
	if err := r.pool.QueryRow(ctx, `SELECT position, replayed_through FROM projection_checkpoints WHERE name = $1 AND version = $2`,
		p.Name(), p.Version()).Scan(&pos, &replayed); err != nil {
		return 0, 0, fmt.Errorf("read checkpoint: %w", err)
	}
	return pos, replayed, nil
}

// sleep waits the attempt's backoff; false if ctx ended.
func (r *Runtime) sleep(ctx context.Context, attempt int) bool {
	return sleepBackoff(ctx, attempt, r.opts.MinBackoff, r.opts.MaxBackoff)
}

// sleepBackoff waits lo·2^attempt capped at hi, with jitter over its upper half so
// that retrying processes spread out; false if ctx ended.
func sleepBackoff(ctx context.Context, attempt int, lo, hi time.Duration) bool {
	d := lo << min(attempt, 20)
	if d <= 0 || d > hi {
		d = hi
	}
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (r *Runtime) lookup(name string) []Projection {
	var out []Projection
	for _, p := range r.projs {
		if p.Name() == name {
			out = append(out, p)
		}
	}
	return out
}
