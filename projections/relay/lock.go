package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// lockClass is the first key of the relay's advisory lock (two-key form, whose key
// space is separate from the one-key form); the second is hashtext(name).
const lockClass = 0x6d6d726c // "mmrl"

// dbTimeout bounds each statement on the lock connection that is not bound to the
// run's context (checkpoint saves, pings).
const dbTimeout = 5 * time.Second

// tryLock takes the relay's session advisory lock on conn without waiting.
func tryLock(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, hashtext($2))`, lockClass, name).Scan(&ok); err != nil {
		return false, fmt.Errorf("try relay lock %s: %w", name, err)
	}
	return ok, nil
}

// waitLock waits on conn until the relay's session advisory lock is free and takes
// it. The server wakes it the moment the holder's session ends, so a standby takes
// over at once, without polling.
func waitLock(ctx context.Context, conn *pgx.Conn, name string) error {
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, lockClass, name); err != nil {
		return fmt.Errorf("wait for relay lock %s: %w", name, err)
	}
	return nil
}

// loadCheckpoint returns the relay's saved position, 0 when it has none.
func loadCheckpoint(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) (int64, error) {
	var pos int64
	err := q.QueryRow(ctx, `SELECT position FROM relay_checkpoints WHERE name = $1`, name).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("load relay checkpoint %s: %w", name, err)
	}
	return pos, nil
}

// saveCheckpoint moves the relay's checkpoint forward to pos (never back). It runs
// on the lock connection: a relay whose session, and so whose lock, is gone cannot
// write it any more.
func saveCheckpoint(ctx context.Context, conn *pgx.Conn, name string, pos int64) error {
	_, err := conn.Exec(ctx, `INSERT INTO relay_checkpoints AS c (name, position, updated_at) VALUES ($1, $2, now())
		ON CONFLICT (name) DO UPDATE SET position = greatest(c.position, EXCLUDED.position), updated_at = now()`, name, pos)
	if err != nil {
		return fmt.Errorf("save relay checkpoint %s at %d: %w", name, pos, err)
	}
	return nil
}
