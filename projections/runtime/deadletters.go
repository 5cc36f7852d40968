package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/events"
)

// DeadLetter is an event a projection did not apply: a poison event, or a later
// event of the same stream parked behind one.
type DeadLetter struct {
	Projection    string          `json:"projection"`
	Version       int             `json:"version"`
	Position      int64           `json:"position"`
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	StreamID      string          `json:"stream_id"`
	StreamVersion int64           `json:"stream_version"`
	OccurredAt    time.Time       `json:"occurred_at"`
	Error         string          `json:"error"`
	Parked        bool            `json:"parked"`
	Attempts      int             `json:"attempts"`
	FailedAt      time.Time       `json:"failed_at"`
	Data          json.RawMessage `json:"data"`
}

// ReplayResult counts what Replay did.
type ReplayResult struct {
	// Replayed dead letters were applied and removed.
	Replayed int `json:"replayed"`
	// Remaining dead letters still fail (or are parked behind one that does).
	Remaining int `json:"remaining"`
}

func insertDeadLetter(ctx context.Context, tx pgx.Tx, p Projection, e events.Envelope, msg string, parked bool, attempts int) error {
	meta, err := json.Marshal(e.Metadata)
	if err != nil {
		meta = []byte("{}")
	}
	data := []byte(e.Data)
	if data == nil {
		data = []byte{}
	}
	_, err = tx.Exec(ctx, `INSERT INTO projection_dead_letters
		(projection, version, position, event_id, type, stream_id, stream_version, occurred_at, metadata, data, error, parked, attempts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (projection, version, position) DO NOTHING`,
		p.Name(), p.Version(), e.Position, e.EventID, e.Type, e.StreamID, e.Version, e.OccurredAt, meta, data, msg, parked, attempts)
	if err != nil {
		return fmt.Errorf("insert dead letter at %d: %w", e.Position, err)
	}
	return nil
}

// parkedStreams returns, for the streams of batch that have dead letters, the
// position of their first dead letter.
func parkedStreams(ctx context.Context, tx pgx.Tx, p Projection, batch []events.Envelope) (map[string]int64, error) {
	streams := make([]string, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, e := range batch {
		if !seen[e.StreamID] {
			seen[e.StreamID] = true
			streams = append(streams, e.StreamID)
		}
	}
	rows, err := tx.Query(ctx, `SELECT stream_id, min(position) FROM projection_dead_letters
		WHERE projection = $1 AND version = $2 AND stream_id = ANY($3) GROUP BY stream_id`, p.Name(), p.Version(), streams)
	if err != nil {
		return nil, fmt.Errorf("find parked streams: %w", err)
	}
	out := map[string]int64{}
	var s string
	var pos int64
	_, err = pgx.ForEachRow(rows, []any{&s, &pos}, func() error {
		out[s] = pos
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find parked streams: %w", err)
	}
	return out, nil
}

// DeadLetters lists the dead letters of the projection called name (every version
// this runtime knows), or of all of them when name is empty, oldest first, at most
// limit (default 100).
func (r *Runtime) DeadLetters(ctx context.Context, name string, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	var names []string
	var versions []int32
	for _, p := range r.projs {
		if name == "" || p.Name() == name {
			names = append(names, p.Name())
			versions = append(versions, int32(p.Version()))
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("dead letters of %q: %w", name, ErrUnknownProjection)
	}
	rows, err := r.pool.Query(ctx, `SELECT d.projection, d.version, d.position, d.event_id, d.type, d.stream_id, d.stream_version,
			d.occurred_at, d.error, d.parked, d.attempts, d.failed_at, d.data
		FROM projection_dead_letters d
		JOIN unnest($1::text[], $2::int[]) AS k(name, version) ON d.projection = k.name AND d.version = k.version
		ORDER BY d.projection, d.version, d.position LIMIT $3`, names, versions, limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DeadLetter, error) {
		var d DeadLetter
		var data []byte
		err := row.Scan(&d.Projection, &d.Version, &d.Position, &d.EventID, &d.Type, &d.StreamID, &d.StreamVersion,
			&d.OccurredAt, &d.Error, &d.Parked, &d.Attempts, &d.FailedAt, &data)
		if json.Valid(data) {
			d.Data = data
		} else {
			d.Data, _ = json.Marshal(string(data))
		}
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Replay re-applies the dead letters of the projection called name, stream by
// stream in position order, each stream in one short transaction that holds the
// checkpoint lock (so it never interleaves with a live batch). A dead letter that
// applies is deleted; the first one of a stream that fails again keeps its place,
// with the new error, and so do the stream's later ones. Meant to run after the
// cause is fixed (a new binary, repaired data).
func (r *Runtime) Replay(ctx context.Context, name string) (ReplayResult, error) {
	var res ReplayResult
	projs := r.lookup(name)
	if len(projs) == 0 {
		return res, fmt.Errorf("replay %q: %w", name, ErrUnknownProjection)
	}
	for _, p := range projs {
		rows, err := r.pool.Query(ctx, `SELECT DISTINCT stream_id FROM projection_dead_letters WHERE projection = $1 AND version = $2`,
			p.Name(), p.Version())
		if err != nil {
			return res, fmt.Errorf("replay %s: list streams: %w", p.Name(), err)
		}
		streams, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return res, fmt.Errorf("replay %s: list streams: %w", p.Name(), err)
		}
		for _, s := range streams {
			replayed, remaining, err := r.replayStream(ctx, p, s)
			if err != nil {
				return res, fmt.Errorf("replay %s stream %s: %w", p.Name(), s, err)
			}
			res.Replayed += replayed
			res.Remaining += remaining
		}
	}
	return res, nil
}

func (r *Runtime) replayStream(ctx context.Context, p Projection, stream string) (replayed, remaining int, err error) {
	err = r.inCheckpointTx(ctx, p, func(tx pgx.Tx, row checkpointRow) (int64, error) {
		cp := row.position
		rows, err := tx.Query(ctx, `SELECT id, position, event_id, type, stream_id, stream_version, occurred_at, metadata, data
			FROM projection_dead_letters WHERE projection = $1 AND version = $2 AND stream_id = $3 ORDER BY position FOR UPDATE`,
			p.Name(), p.Version(), stream)
		if err != nil {
			return 0, err
		}
		type letter struct {
			id  int64
			env events.Envelope
		}
		letters, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (letter, error) {
			var l letter
			var meta, data []byte
			err := row.Scan(&l.id, &l.env.Position, &l.env.EventID, &l.env.Type, &l.env.StreamID, &l.env.Version, &l.env.OccurredAt, &meta, &data)
			_ = json.Unmarshal(meta, &l.env.Metadata) // metadata only informs; a broken one must not block the replay
			l.env.Data = data
			return l, err
		})
		if err != nil {
			return 0, err
		}
		for i, l := range letters {
			sp, err := tx.Begin(ctx)
			if err != nil {
				return 0, err
			}
			if aerr := p.Apply(ctx, sp, []events.Envelope{l.env}); aerr != nil {
				if err := sp.Rollback(ctx); err != nil {
					return 0, err
				}
				if classify(aerr) == kindTransient {
					return 0, aerr
				}
				if _, err := tx.Exec(ctx, `UPDATE projection_dead_letters SET error = $2, parked = false, attempts = attempts + 1, failed_at = now()
					WHERE id = $1`, l.id, aerr.Error()); err != nil {
					return 0, err
				}
				remaining = len(letters) - i
				break
			}
			if err := sp.Commit(ctx); err != nil {
				return 0, err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM projection_dead_letters WHERE id = $1`, l.id); err != nil {
				return 0, err
			}
			replayed++
		}
		return cp, nil
	})
	if err != nil {
		return 0, 0, err
	}
	return replayed, remaining, nil
}
