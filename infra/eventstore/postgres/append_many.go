package postgres

import (
	"context"
	"errors"
	"fmt"

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
// The statements are sent as one pipelined batch inside the transaction (BEGIN,
// the batch, COMMIT: three round trips, one commit), all events of the transaction
// sharing its id in the high bits of their positions, so readers of the global log
// see all the parts at once or none.
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
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		qb := &pgx.Batch{}
		offset := int64(0)
		for i, p := range parts {
			b := batches[i]
			n := int64(len(p.Events))
			args := []any{p.StreamID, n, b.ids, b.types, b.data, b.meta, b.at}
			query := appendManyExact
			switch p.ExpectedVersion {
			case events.ExpectAny:
				query = appendManyAny
			case events.ExpectNoStream:
				query = appendManyNoStream
			default:
				args = append(args, p.ExpectedVersion)
			}
			args = append(args, offset)
			offset += n
			qb.Queue(query, args...)
		}
		br := tx.SendBatch(ctx, qb)
		var first error
		for i, p := range parts {
			var version, position int64
			err := br.QueryRow().Scan(&version, &position)
			if first != nil {
				continue // the transaction is lost anyway; drain the results
			}
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				first = errManyConflict{part: i}
			case err != nil:
				first = err
			default:
				n := int64(len(p.Events))
				results[i] = events.AppendResult{StreamID: p.StreamID, FirstVersion: version - n + 1, LastVersion: version, Position: position}
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
