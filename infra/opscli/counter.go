package opscli

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// EventCounter counts events of the PostgreSQL event store's global log
// (eventstore_events, migrations/00002) without reading them: an index-only scan
// of the position primary key, some 30 ms per million events here. It implements
// rebuild.Counter (exact rebuild progress and lag) and runtime.EventCounter.
//
// It lives here, beside the ops commands that need it, rather than in
// infra/eventstore/postgres; that adapter may adopt it as methods of Store.
type EventCounter struct {
	pool *pgxpool.Pool
}

// NewEventCounter returns a counter over the event store's pool.
func NewEventCounter(pool *pgxpool.Pool) (*EventCounter, error) {
	if pool == nil {
		return nil, errors.New("event counter: nil pool")
	}
	return &EventCounter{pool: pool}, nil
}

// CountRange counts the events with after < position <= upTo.
func (c *EventCounter) CountRange(ctx context.Context, after, upTo int64) (int64, error) {
	if upTo <= after {
		return 0, nil
	}
	var n int64
	if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM eventstore_events WHERE position > $1 AND position <= $2`,
		after, upTo).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events in (%d, %d]: %w", after, upTo, err)
	}
	return n, nil
}

// CountAfter counts the readable events with position > after, stopping at limit.
func (c *EventCounter) CountAfter(ctx context.Context, after int64, limit int) (int64, error) {
	var n int64
	if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM eventstore_events
		WHERE position > $1 AND position < eventstore_readable_bound() LIMIT $2) x`, after, limit).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events after %d: %w", after, err)
	}
	return n, nil
}
