// Package postgres is MediaMesh's default event store: the event store port
// (eventstoretest.Store) on PostgreSQL with pgx/v5, schema in
// migrations/00002_eventstore.sql.
//
// # Global positions that readers never skip
//
// Sequence values are handed out in call order, not commit order, so a reader that
// tails "position > last" skips an event whose transaction commits after a later one.
// This store instead derives the position from the writer's transaction id:
//
//	position = (pg_current_xact_id() << 20) | ordinal of the event within its append
//
// One append is one transaction, so positions order by transaction id and then by
// order within the append, and an append holds at most MaxAppendEvents events.
// (Positions fit an int64 until the server has used 2^43 transaction ids, some
// 27 years at 10,000 write transactions per second.)
// Readers of the global log (ReadAll, Subscribe, HeadPosition) return only positions
// below pg_snapshot_xmin(pg_current_snapshot()) << 20, computed from the reading
// statement's own snapshot: every transaction below that xmin has finished, and every
// transaction that commits later has an id at or above it, so it gets higher
// positions than anything already read. Nothing is skipped and a checkpoint is one
// number.
//
// The price is latency, never loss: the global log does not advance past a write
// transaction that is still open. A snapshot's xmin is server-wide, so one refinement
// (the SQL function eventstore_readable_bound) leaves out in-progress transactions
// that pg_stat_activity shows belong to another database: they cannot write these
// tables, and an idle-in-transaction session elsewhere on the server must not stall
// this log. Write transactions in this database (read-model updates in the embedded
// mode, migrations) still hold it back while open: keep them short. ReadStream is not
// bounded at all: a writer reads its own append at once. Positions assume the server's transaction ids only grow; restoring
// a logical dump into a fresh cluster (whose ids start low again) needs the new
// cluster's next transaction id raised above max(position) >> 20 first
// (pg_resetwal -x); pg_upgrade keeps the counter.
//
// # Appends
//
// Without a WithBeforeCommit hook an append is a single statement (its own
// transaction, one round trip): it bumps the stream's row in eventstore_streams under
// the expected-version condition (that row lock serializes writers of one stream) and
// inserts all events from arrays with unnest. A conflicting version yields no row and
// writes nothing. After the commit, listeners of NotifyChannel are notified (see
// notifySQL for why not inside the append). Idempotency is checked only
// on the failure paths, so a first attempt costs nothing extra: a retried batch
// either fails the version check or hits the unique event id, and then the original
// append is looked up by the event ids and its result returned.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
)

// NotifyChannel is the LISTEN/NOTIFY channel every append notifies when it commits
// (with an empty payload). Other components may LISTEN on it to wake up instead of
// polling; a notification only says "look again", never what changed.
const NotifyChannel = "mediamesh_eventstore"

// MaxAppendEvents is the largest batch one Append accepts: the ordinal of an event
// within its append takes the low 20 bits of its position.
const MaxAppendEvents = 1<<ordinalBits - 1

const ordinalBits = 20

// Subscription polling: after a notification or a poll finds committed events that
// are not readable yet (an older transaction is still open), it polls again with a
// backoff from minBackoff to maxBackoff; otherwise it waits for a notification, or
// safetyPoll at most in case one was missed (e.g. a dropped connection).
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = 250 * time.Millisecond
	safetyPoll = time.Second
)

// Store is the PostgreSQL event store. It is safe for concurrent use.
type Store struct {
	pool         *pgxpool.Pool
	beforeCommit func(ctx context.Context, streamID string)
	// notifying is held by the append that is sending a notification; notifyDue
	// says another one is needed (see notifyCommitted).
	notifying, notifyDue atomic.Bool
}

// Option configures a Store.
type Option func(*Store)

// WithBeforeCommit runs hook inside every append's transaction, after its events are
// written and before it commits. It exists for tests: a hook that blocks holds the
// transaction open, so later appends commit first and the never-skip guarantee can be
// exercised deterministically. With a hook, an append takes three round trips
// (BEGIN, the append statement, COMMIT) instead of one; the statement is the same.
func WithBeforeCommit(hook func(ctx context.Context, streamID string)) Option {
	return func(s *Store) { s.beforeCommit = hook }
}

// New returns a store on pool, whose database must have the migrations applied.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{pool: pool}
	for _, o := range opts {
		o(s)
	}
	return s
}

// readableBound is the first position that readers of the global log may not
// return yet: everything below it belongs to finished transactions. The function
// (migrations/00002_eventstore.sql) takes it from the statement's own snapshot.
const readableBound = `eventstore_readable_bound()`

const eventColumns = `event_id::text, stream_id, version, position, type, data, metadata, occurred_at`

// The three forms of the stream row update; each returns the stream's new version,
// or no row when the expected version does not hold.
const (
	bumpAny = `INSERT INTO eventstore_streams AS cur (stream_id, version) VALUES ($1, $2)
		ON CONFLICT (stream_id) DO UPDATE SET version = cur.version + EXCLUDED.version
		RETURNING version`
	bumpNoStream = `INSERT INTO eventstore_streams (stream_id, version) VALUES ($1, $2)
		ON CONFLICT (stream_id) DO NOTHING
		RETURNING version`
	bumpExact = `UPDATE eventstore_streams SET version = version + $2
		WHERE stream_id = $1 AND version = $8
		RETURNING version`
)

// appendSQL writes the events of one append: $1 stream, $2 event count, $3..$7 the
// event columns as arrays, ($8 the expected version for bumpExact). ord is the
// ordinal of an event within its transaction (the low bits of its position).
func appendSQL(bump, ord string) string {
	return `WITH s AS (` + bump + `),
ins AS (
	INSERT INTO eventstore_events (position, event_id, stream_id, version, type, data, metadata, occurred_at)
	SELECT (x.xid << 20) | (` + ord + `), e.id, $1, s.version - $2 + e.ord, e.type, e.data::json, e.meta::jsonb, e.at
	FROM s,
		(SELECT pg_current_xact_id()::text::bigint AS xid) x,
		unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
			WITH ORDINALITY AS e(id, type, data, meta, at, ord)
	RETURNING position
)
SELECT s.version, (SELECT max(position) FROM ins) FROM s`
}

var (
	appendAny      = appendSQL(bumpAny, "e.ord")
	appendNoStream = appendSQL(bumpNoStream, "e.ord")
	appendExact    = appendSQL(bumpExact, "e.ord")
)

// batch is an append's events as column arrays.
type batch struct {
	ids, types []string
	data       []*string
	meta       []string
	at         []time.Time
}

func newBatch(streamID string, expected int64, evs []events.Envelope) (batch, error) {
	switch {
	case streamID == "":
		return batch{}, errors.New("empty stream id")
	case expected < events.ExpectAny:
		return batch{}, fmt.Errorf("invalid expected version %d", expected)
	case len(evs) == 0:
		return batch{}, errors.New("no events")
	case len(evs) > MaxAppendEvents:
		return batch{}, fmt.Errorf("%d events in one append, at most %d", len(evs), MaxAppendEvents)
	}
	b := batch{
		ids: make([]string, len(evs)), types: make([]string, len(evs)), data: make([]*string, len(evs)),
		meta: make([]string, len(evs)), at: make([]time.Time, len(evs)),
	}
	seen := make(map[string]bool, len(evs))
	now := time.Now()
	for i, e := range evs {
		id, err := eventID(e.EventID)
		if err != nil {
			return batch{}, err
		}
		if seen[id] {
			return batch{}, fmt.Errorf("event id %s twice in one append", id)
		}
		seen[id] = true
		if e.Type == "" {
			return batch{}, fmt.Errorf("event %s has no type", id)
		}
		if e.Data != nil && !json.Valid(e.Data) {
			return batch{}, fmt.Errorf("event %s: data is not valid JSON", id)
		}
		meta, err := json.Marshal(e.Metadata)
		if err != nil {
			return batch{}, fmt.Errorf("encode metadata of event %s: %w", id, err)
		}
		b.ids[i], b.types[i], b.meta[i] = id, e.Type, string(meta)
		if e.Data != nil {
			d := string(e.Data)
			b.data[i] = &d
		}
		at := e.OccurredAt
		if at.IsZero() {
			at = now
		}
		b.at[i] = at.UTC().Truncate(time.Microsecond)
	}
	return b, nil
}

// eventID validates a caller's event id, or makes a UUIDv7 when it is empty.
func eventID(id string) (string, error) {
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return "", fmt.Errorf("generate event id: %w", err)
		}
		return u.String(), nil
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return "", fmt.Errorf("event id %q is not a uuid: %w", id, err)
	}
	return u.String(), nil
}

// Append writes evs to streamID atomically if the stream's version is
// expectedVersion (events.ExpectAny, events.ExpectNoStream or an exact version). See
// the package documentation for how conflicts and retried batches are handled.
func (s *Store) Append(ctx context.Context, streamID string, expectedVersion int64, evs []events.Envelope) (events.AppendResult, error) {
	b, err := newBatch(streamID, expectedVersion, evs)
	if err != nil {
		return events.AppendResult{}, fmt.Errorf("append to stream %s: %w", streamID, err)
	}
	n := int64(len(evs))
	args := []any{streamID, n, b.ids, b.types, b.data, b.meta, b.at}
	var query string
	switch expectedVersion {
	case events.ExpectAny:
		query = appendAny
	case events.ExpectNoStream:
		query = appendNoStream
	default:
		query = appendExact
		args = append(args, expectedVersion)
	}

	var version, position int64
	if s.beforeCommit == nil {
		err = s.pool.QueryRow(ctx, query, args...).Scan(&version, &position)
	} else {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, query, args...).Scan(&version, &position); err != nil {
				return err
			}
			s.beforeCommit(ctx, streamID)
			return nil
		})
	}
	if err == nil {
		s.notifyCommitted(ctx)
		return events.AppendResult{StreamID: streamID, FirstVersion: version - n + 1, LastVersion: version, Position: position}, nil
	}

	conflict := errors.Is(err, pgx.ErrNoRows)
	var pgErr *pgconn.PgError
	duplicate := errors.As(err, &pgErr) && pgErr.Code == "23505" // unique_violation
	if !conflict && !duplicate {
		return events.AppendResult{}, fmt.Errorf("append to stream %s: %w", streamID, err)
	}
	// A retried batch ends up here (its ids are stored, or its expected version is
	// stale by now): answer with the original append.
	orig, found, lerr := s.original(ctx, b.ids)
	if lerr != nil {
		return events.AppendResult{}, fmt.Errorf("append to stream %s: %w", streamID, lerr)
	}
	if found {
		return orig, nil
	}
	if duplicate && pgErr.ConstraintName == "eventstore_events_event_id_key" {
		// The conflicting event was there for the insert, yet the lookup (a later
		// snapshot) does not see it: it cannot have been deleted, so report it.
		return events.AppendResult{}, fmt.Errorf("append to stream %s: event id already stored: %w", streamID, err)
	}
	return events.AppendResult{}, fmt.Errorf("append to stream %s at expected version %d: %w", streamID, expectedVersion, events.ErrVersionConflict)
}

// notifySQL wakes listeners. It runs in its own transaction after appends commit,
// not inside them: a transaction that NOTIFYs holds a server-wide lock from its
// pre-commit through its WAL flush, which serializes all such commits and defeats
// group commit (measured here with 8 writers: 1,400 single-event appends/s and 54k
// events/s in batches of 100 with NOTIFY inside the append, 2,300/s and 83k/s
// like this). Not waiting for its own flush, this one holds that lock briefly.
const notifySQL = `BEGIN; SET LOCAL synchronous_commit = off; NOTIFY ` + NotifyChannel + `; COMMIT`

// notifyCommitted sends one notification after a commit, coalescing: while one is
// being sent, further appends only mark that another is due, and the sender sends it
// when it is done. So notifications cost at most one round trip in flight per store,
// and every commit is followed by a notification sent after it.
func (s *Store) notifyCommitted(ctx context.Context) {
	s.notifyDue.Store(true)
	for s.notifyDue.Load() && s.notifying.CompareAndSwap(false, true) {
		for s.notifyDue.Swap(false) {
			// A lost notification only delays listeners until their safety poll, and
			// the append has committed: its caller must not see an error for it.
			_, _ = s.pool.Exec(context.WithoutCancel(ctx), notifySQL)
		}
		s.notifying.Store(false)
	}
}

// originalSQL finds the append that stored the given event ids: the events of one
// append share their transaction id, the position's high bits.
const originalSQL = `WITH hit AS (
	SELECT position FROM eventstore_events WHERE event_id = ANY($1::uuid[])
), tx AS (
	SELECT count(*) AS hits, min(position) >> 20 AS lo, max(position) >> 20 AS hi FROM hit
)
SELECT tx.hits, tx.lo IS NOT DISTINCT FROM tx.hi, e.stream_id, min(e.version), max(e.version), max(e.position)
FROM tx LEFT JOIN eventstore_events e ON e.position BETWEEN tx.lo << 20 AND (tx.lo << 20) | 1048575
GROUP BY tx.hits, tx.lo, tx.hi, e.stream_id`

// original returns the result of the append that stored ids, if they are all stored
// and by one append. Some but not all of them stored is an error: that batch is not
// a retry of anything.
func (s *Store) original(ctx context.Context, ids []string) (events.AppendResult, bool, error) {
	var (
		hits      int64
		oneTx     bool
		stream    *string
		first     *int64
		last, pos *int64
	)
	if err := s.pool.QueryRow(ctx, originalSQL, ids).Scan(&hits, &oneTx, &stream, &first, &last, &pos); err != nil {
		return events.AppendResult{}, false, fmt.Errorf("look up event ids: %w", err)
	}
	switch {
	case hits == 0:
		return events.AppendResult{}, false, nil
	case hits != int64(len(ids)) || !oneTx || stream == nil:
		return events.AppendResult{}, false, fmt.Errorf("%d of the %d event ids are already stored, not as one append", hits, len(ids))
	}
	return events.AppendResult{StreamID: *stream, FirstVersion: *first, LastVersion: *last, Position: *pos}, true, nil
}

// ReadStream returns the stream's events oldest first, or events.ErrStreamNotFound.
// It sees every committed append at once, including ones the global log does not
// return yet.
func (s *Store) ReadStream(ctx context.Context, streamID string) ([]events.Envelope, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM eventstore_events WHERE stream_id = $1 ORDER BY version`, streamID)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", streamID, err)
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", streamID, err)
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("read stream %s: %w", streamID, events.ErrStreamNotFound)
	}
	return evs, nil
}

// ReadAll returns at most limit events with Position > after in position order,
// only from finished transactions (see the package documentation).
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]events.Envelope, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read all: limit %d, want > 0", limit)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM eventstore_events
		WHERE position > $1 AND position < `+readableBound+`
		ORDER BY position LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read all after %d: %w", after, err)
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("read all after %d: %w", after, err)
	}
	return evs, nil
}

// HeadPosition returns the position of the newest event ReadAll can return, or 0.
func (s *Store) HeadPosition(ctx context.Context) (int64, error) {
	var head int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM eventstore_events WHERE position < `+readableBound).Scan(&head)
	if err != nil {
		return 0, fmt.Errorf("head position: %w", err)
	}
	return head, nil
}

// pending reports whether committed events above after exist that readers may not
// return yet because an older transaction is still open.
func (s *Store) pending(ctx context.Context, after int64) (bool, error) {
	var p bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM eventstore_events
		WHERE position > $1 AND position >= `+readableBound+`)`, after).Scan(&p)
	return p, err
}

func scanEvents(rows pgx.Rows) ([]events.Envelope, error) {
	var out []events.Envelope
	for rows.Next() {
		var (
			e    events.Envelope
			data []byte
			meta []byte
		)
		if err := rows.Scan(&e.EventID, &e.StreamID, &e.Version, &e.Position, &e.Type, &data, &meta, &e.OccurredAt); err != nil {
			rows.Close()
			return nil, err
		}
		if err := json.Unmarshal(meta, &e.Metadata); err != nil {
			rows.Close()
			return nil, fmt.Errorf("decode metadata of event %s: %w", e.EventID, err)
		}
		if data != nil {
			e.Data = json.RawMessage(data)
		}
		e.OccurredAt = e.OccurredAt.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// Subscribe hands every event with Position > after to handle, in position order and
// in batches of at most batchSize, until ctx ends or handle fails; it returns ctx.Err()
// or handle's error (wrapped).
//
// It LISTENs on NotifyChannel over a dedicated connection (not one of the pool's)
// before its first read, so no notification between a read and the wait is lost.
// A full batch is followed by the next read at once. Otherwise it waits for a
// notification; while committed events are not readable yet because an older
// transaction is open, it polls with a backoff (5 ms doubling to 250 ms) instead,
// since that transaction's own notification may be the only one coming and a
// non-appending transaction sends none. A safety poll every second covers a missed
// notification.
func (s *Store) Subscribe(ctx context.Context, after int64, batchSize int, handle func(context.Context, []events.Envelope) error) error {
	if batchSize <= 0 {
		return fmt.Errorf("subscribe: batch size %d, want > 0", batchSize)
	}
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return subscribeErr(ctx, fmt.Errorf("subscribe: listen connection: %w", err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return subscribeErr(ctx, fmt.Errorf("subscribe: listen: %w", err))
	}

	backoff := time.Duration(0)
	for {
		evs, err := s.ReadAll(ctx, after, batchSize)
		if err != nil {
			return subscribeErr(ctx, fmt.Errorf("subscribe: %w", err))
		}
		if len(evs) > 0 {
			if err := handle(ctx, evs); err != nil {
				return fmt.Errorf("subscribe: handle events %d..%d: %w", evs[0].Position, evs[len(evs)-1].Position, err)
			}
			after = evs[len(evs)-1].Position
			backoff = 0
			if len(evs) == batchSize {
				continue
			}
		}
		pending, err := s.pending(ctx, after)
		if err != nil {
			return subscribeErr(ctx, fmt.Errorf("subscribe: check pending events: %w", err))
		}
		wait := safetyPoll
		if pending {
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			wait = backoff
		} else {
			backoff = 0
		}
		if err := waitNotification(ctx, conn, wait); err != nil {
			return subscribeErr(ctx, fmt.Errorf("subscribe: wait for notification: %w", err))
		}
	}
}

// waitNotification returns when a notification arrives or wait has passed (nil
// both), or with an error when ctx ends or the connection fails.
func waitNotification(ctx context.Context, conn *pgx.Conn, wait time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	_, err := conn.WaitForNotification(wctx)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		return nil // the wait timed out: poll
	}
	return err
}

// subscribeErr prefers ctx's error: a read cut short by cancellation is a cancelled
// subscription, not a failed one.
func subscribeErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
