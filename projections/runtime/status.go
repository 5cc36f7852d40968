package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Status is what ops see of one projection version.
type Status struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	// Serving is true for the version that answers reads.
	Serving bool `json:"serving"`
	// Position is the global position of the last applied event.
	Position int64 `json:"position"`
	// HeadPosition is the newest readable position of the event store. Positions are
	// not dense: never subtract them to measure lag.
	HeadPosition int64 `json:"head_position"`
	// LagEvents counts the events above Position, up to the runtime's LagCap;
	// LagEventsCapped says the real number may be higher.
	LagEvents       int64 `json:"lag_events"`
	LagEventsCapped bool  `json:"lag_events_capped"`
	// LagSeconds is the age of the oldest unapplied event (0 when caught up).
	LagSeconds float64 `json:"lag_seconds"`
	// DeadLetters counts the projection version's dead letters.
	DeadLetters int64 `json:"dead_letters"`
	// UpdatedAt is when the checkpoint last moved (zero before the first run).
	UpdatedAt time.Time `json:"updated_at"`
}

// Status reports every projection of the runtime, in registration order. It reads
// the checkpoint table and the event store, so it works in any role.
func (r *Runtime) Status(ctx context.Context) ([]Status, error) {
	head, err := r.src.HeadPosition(ctx)
	if err != nil {
		return nil, fmt.Errorf("projection status: head position: %w", err)
	}
	out := make([]Status, 0, len(r.projs))
	for _, p := range r.projs {
		st := Status{Name: p.Name(), Version: p.Version(), HeadPosition: head}
		err := r.pool.QueryRow(ctx, `SELECT c.position, c.serving, c.updated_at,
				(SELECT count(*) FROM projection_dead_letters d WHERE d.projection = c.name AND d.version = c.version)
			FROM projection_checkpoints c WHERE c.name = $1 AND c.version = $2`, p.Name(), p.Version()).
			Scan(&st.Position, &st.Serving, &st.UpdatedAt, &st.DeadLetters)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("projection status %s: %w", p.Name(), err)
		}
		if err := r.lag(ctx, &st); err != nil {
			return nil, fmt.Errorf("projection status %s: %w", p.Name(), err)
		}
		out = append(out, st)
	}
	return out, nil
}

// lag fills LagEvents and LagSeconds by reading above the checkpoint, bounded by
// LagCap (or counting, when the source can).
func (r *Runtime) lag(ctx context.Context, st *Status) error {
	if st.HeadPosition <= st.Position {
		return nil
	}
	limit := r.opts.LagCap
	c, counts := r.src.(EventCounter)
	if counts {
		n, err := c.CountAfter(ctx, st.Position, limit)
		if err != nil {
			return fmt.Errorf("count lag: %w", err)
		}
		st.LagEvents = n
		limit = 1
	}
	evs, err := r.src.ReadAll(ctx, st.Position, limit)
	if err != nil {
		return fmt.Errorf("read lag: %w", err)
	}
	if !counts {
		st.LagEvents = int64(len(evs))
	}
	if len(evs) == 0 {
		return nil
	}
	st.LagEventsCapped = st.LagEvents >= int64(r.opts.LagCap)
	if age := r.opts.Now().Sub(evs[0].OccurredAt).Seconds(); age > 0 {
		st.LagSeconds = age
	}
	return nil
}
