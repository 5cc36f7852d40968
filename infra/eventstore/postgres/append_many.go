package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mediamesh/mediamesh/events"
)

// errManyConflict carries the index of the part whose expected version failed out
// of the transaction function (which rolls back on any error).
type errManyConflict struct{ part int }

func (e errManyConflict) Error() string { return fmt.Sprintf("part %d: version conflict", e.part) }

// AppendMany appends to several streams in ONE transaction: every part's events are
// written if every part's expected version holds, and nothing otherwise (a stale
// part yields events.ErrVersionConflict naming it). Results come in the order of
// parts. It exists for writers whose one decision spans streams (ingest writes an
// external id's pointer stream, its episodes' pointer streams and the program's
// stream for one item): one commit instead of one per stream, and no crash window
// between them.
//
// The same rules as Append apply per part (event ids valid and unique, at most
// MaxAppendEvents events in all, a stream at most once). Retrying the same parts
// with the same event ids is a no-op that returns the original results, as for
// Append: when the transaction fails on a stored event id or a stale version, the
// event ids are looked up, and if all of them are stored by one transaction the
// results are rebuilt from them. Some but not all of them stored is an error.
//
// The parts are written set-wise: one statement per kind of expected version
// (any, no stream, exact) bumps all of that kind's streams and inserts all their
// events from arrays, so a hundred streams cost three statements, not a hundred.
// The statements are sent as one pipelined batch inside the transaction (BEGIN,
// the batch, COMMIT: three round trips, one commit), all events of the transaction
// sharing its id in the high bits of their positions (ordinals in the order of
// parts), so readers of the global log see all the parts at once or none.
func (s *Store) AppendMany(ctx context.Context, parts []events.StreamAppend) ([]events.AppendResult, error) {
	if len(parts) == 0 {
		return nil, errors.New("append many: no streams")
	}
	batches := make([]batch, len(parts))
	streams := make(map[string]bool, len(parts))
	ids := make(map[string]bool)
	var allIDs []string
	total := 0
	for i, p := range parts {
		if streams[p.StreamID] {
			return nil, fmt.Errorf("append many: stream %s appears twice", p.StreamID)
		}
		streams[p.StreamID] = true
		b, err := newBatch(p.StreamID, p.ExpectedVersion, p.Events)
		if err != nil {
			return nil, fmt.Errorf("append many: stream %s: %w", p.StreamID, err)
		}
		for _, id := range b.ids {
			if ids[id] {
				return nil, fmt.Errorf("append many: event id %s twice", id)
			}
			ids[id] = true
		}
		allIDs = append(allIDs, b.ids...)
		total += len(p.Events)
		batches[i] = b
	}
	if total > MaxAppendEvents {
		return nil, fmt.Errorf("append many: %d events in one append, at most %d", total, MaxAppendEvents)
	}

	results := make([]events.AppendResult, len(parts))
	stmts := manyStatements(parts, batches)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		qb := &pgx.Batch{}
		for _, st := range stmts {
			qb.Queue(st.query, st.args...)
		}
		br := tx.SendBatch(ctx, qb)
		var first error
		for _, st := range stmts {
			got := map[string][2]int64{}
			rows, err := br.Query()
			if err == nil {
				for rows.Next() {
					var stream string
					var version, position int64
					if err = rows.Scan(&stream, &version, &position); err != nil {
						break
					}
					got[stream] = [2]int64{version, position}
				}
				rows.Close()
				if err == nil {
					err = rows.Err()
				}
			}
			if first != nil {
				continue // the transaction is lost anyway; drain the results
			}
			if err != nil {
				first = err
				continue
			}
			for _, i := range st.parts {
				vp, ok := got[parts[i].StreamID]
				if !ok {
					first = errManyConflict{part: i}
					break
				}
				n := int64(len(parts[i].Events))
				results[i] = events.AppendResult{StreamID: parts[i].StreamID, FirstVersion: vp[0] - n + 1, LastVersion: vp[0], Position: vp[1]}
			}
		}
		if err := br.Close(); err != nil && first == nil {
			first = err
		}
		if first != nil {
			return first
		}
		if s.beforeCommit != nil {
			for _, p := range parts {
				s.beforeCommit(ctx, p.StreamID)
			}
		}
		return nil
	})
	if err == nil {
		s.notifyCommitted(ctx)
		return results, nil
	}

	var mc errManyConflict
	conflict := errors.As(err, &mc)
	var pgErr *pgconn.PgError
	duplicate := errors.As(err, &pgErr) && pgErr.Code == "23505" // unique_violation
	if !conflict && !duplicate {
		return nil, fmt.Errorf("append many (%d streams): %w", len(parts), err)
	}
	orig, found, lerr := s.originalMany(ctx, parts, allIDs)
	if lerr != nil {
		return nil, fmt.Errorf("append many (%d streams): %w", len(parts), lerr)
	}
	if found {
		return orig, nil
	}
	if duplicate {
		return nil, fmt.Errorf("append many (%d streams): event id already stored: %w", len(parts), err)
	}
	p := parts[mc.part]
	return nil, fmt.Errorf("append to stream %s at expected version %d: %w", p.StreamID, p.ExpectedVersion, events.ErrVersionConflict)
}

// originalManySQL finds where the given event ids are stored, per stream.
const originalManySQL = `SELECT stream_id, count(*), min(version), max(version), max(position),
	min(position) >> 20, max(position) >> 20
FROM eventstore_events WHERE event_id = ANY($1::uuid[])
GROUP BY stream_id`

// originalMany returns the results of the AppendMany that stored ids, if all of
// them are stored by one transaction, each part's in its stream.
func (s *Store) originalMany(ctx context.Context, parts []events.StreamAppend, ids []string) ([]events.AppendResult, bool, error) {
	rows, err := s.pool.Query(ctx, originalManySQL, ids)
	if err != nil {
		return nil, false, fmt.Errorf("look up stored event ids: %w", err)
	}
	type stored struct {
		n          int
		res        events.AppendResult
		txLo, txHi int64
	}
	byStream := map[string]stored{}
	hits := 0
	tx := int64(-1)
	oneTx := true
	for rows.Next() {
		var st stored
		if err := rows.Scan(&st.res.StreamID, &st.n, &st.res.FirstVersion, &st.res.LastVersion, &st.res.Position, &st.txLo, &st.txHi); err != nil {
			rows.Close()
			return nil, false, fmt.Errorf("look up stored event ids: %w", err)
		}
		hits += st.n
		if st.txLo != st.txHi || (tx >= 0 && st.txLo != tx) {
			oneTx = false
		}
		tx = st.txLo
		byStream[st.res.StreamID] = st
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("look up stored event ids: %w", err)
	}
	switch {
	case hits == 0:
		return nil, false, nil
	case hits != len(ids) || !oneTx:
		return nil, false, fmt.Errorf("%d of the %d event ids are already stored, not by one append: the batch is not a retry", hits, len(ids))
	}
	out := make([]events.AppendResult, len(parts))
	for i, p := range parts {
		st, ok := byStream[p.StreamID]
		if !ok || st.n != len(p.Events) {
			return nil, false, fmt.Errorf("the event ids of stream %s are stored in other streams: the batch is not a retry", p.StreamID)
		}
		out[i] = st.res
	}
	return out, true, nil
}

// The stream row updates of manySQL, one per kind of expected version; each
// returns (stream_id, new version) for the streams whose expectation held.
const (
	bumpManyAny = `INSERT INTO eventstore_streams AS cur (stream_id, version)
		SELECT stream_id, n FROM p ORDER BY stream_id
		ON CONFLICT (stream_id) DO UPDATE SET version = cur.version + EXCLUDED.version
		RETURNING cur.stream_id, cur.version`
	bumpManyNoStream = `INSERT INTO eventstore_streams (stream_id, version)
		SELECT stream_id, n FROM p ORDER BY stream_id
		ON CONFLICT (stream_id) DO NOTHING
		RETURNING stream_id, version`
	bumpManyExact = `UPDATE eventstore_streams AS cur SET version = cur.version + p.n
		FROM p WHERE cur.stream_id = p.stream_id AND cur.version = p.expected
		RETURNING cur.stream_id, cur.version`
)

// manySQL writes several streams' events with one statement: $1..$3 the parts
// (stream, event count, expected version), $4..$11 the events (stream, index
// within its part from 1, ordinal within the transaction, then the event
// columns). Events of a stream whose expectation failed are not inserted (the
// caller rolls back). It returns (stream, new version, last position) per
// written stream.
func manySQL(bump string) string {
	return `WITH p AS (
	SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS p(stream_id, n, expected)
),
s AS (` + bump + `),
ins AS (
	INSERT INTO eventstore_events (position, event_id, stream_id, version, type, data, metadata, occurred_at)
	SELECT (x.xid << 20) | e.ord, e.id, e.stream_id, s.version - p.n + e.idx, e.type, e.data::json, e.meta::jsonb, e.at
	FROM unnest($4::text[], $5::bigint[], $6::bigint[], $7::uuid[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])
			AS e(stream_id, idx, ord, id, type, data, meta, at)
		JOIN s ON s.stream_id = e.stream_id
		JOIN p ON p.stream_id = e.stream_id,
		(SELECT pg_current_xact_id()::text::bigint AS xid) x
	RETURNING stream_id, position
)
SELECT s.stream_id, s.version, m.pos FROM s JOIN (SELECT stream_id, max(position) AS pos FROM ins GROUP BY stream_id) m USING (stream_id)`
}

var (
	appendManyAnySQL      = manySQL(bumpManyAny)
	appendManyNoStreamSQL = manySQL(bumpManyNoStream)
	appendManyExactSQL    = manySQL(bumpManyExact)
)

// manyStatement is one statement of an AppendMany: the parts (indexes) it writes.
type manyStatement struct {
	query string
	args  []any
	parts []int
}

// manyStatements groups parts by kind of expected version into at most three
// statements (in the order any, no stream, exact). Ordinals follow the order of
// parts, as if each part were appended in turn.
func manyStatements(parts []events.StreamAppend, batches []batch) []manyStatement {
	type cols struct {
		streams          []string
		ns, expected     []int64
		evStream         []string
		idx, ord         []int64
		ids, types       []string
		data             []*string
		meta             []string
		at               []time.Time
		partsOfStatement []int
	}
	var kinds [3]cols
	offset := int64(0)
	for i, p := range parts {
		k := 2
		switch p.ExpectedVersion {
		case events.ExpectAny:
			k = 0
		case events.ExpectNoStream:
			k = 1
		}
		c := &kinds[k]
		b := batches[i]
		n := int64(len(p.Events))
		c.streams = append(c.streams, p.StreamID)
		c.ns = append(c.ns, n)
		c.expected = append(c.expected, p.ExpectedVersion)
		c.partsOfStatement = append(c.partsOfStatement, i)
		for j := range b.ids {
			c.evStream = append(c.evStream, p.StreamID)
			c.idx = append(c.idx, int64(j+1))
			c.ord = append(c.ord, offset+int64(j+1))
		}
		c.ids = append(c.ids, b.ids...)
		c.types = append(c.types, b.types...)
		c.data = append(c.data, b.data...)
		c.meta = append(c.meta, b.meta...)
		c.at = append(c.at, b.at...)
		offset += n
	}
	var out []manyStatement
	for k, q := range []string{appendManyAnySQL, appendManyNoStreamSQL, appendManyExactSQL} {
		c := kinds[k]
		if len(c.streams) == 0 {
			continue
		}
		out = append(out, manyStatement{query: q, parts: c.partsOfStatement, args: []any{
			c.streams, c.ns, c.expected, c.evStream, c.idx, c.ord, c.ids, c.types, c.data, c.meta, c.at,
		}})
	}
	return out
}
