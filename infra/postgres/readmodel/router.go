package readmodel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/query/app"
)

// Router sends the query side's reads to read replicas (MEDIAMESH_DATABASE_READ_URLS)
// and falls back to the primary.
//
// Decisions:
//   - Reads go to the replicas in turn. A replica that fails (an error, or no answer
//     within RouterOptions.ReplicaTimeout) is skipped for RouterOptions.Cooldown and
//     the read is answered by the primary at once, so a dead replica costs one slow
//     read per cooldown, never a 5xx.
//   - A read that must include a consistency token's write and finds that the
//     replica does not (it lags) is answered by the primary instead; the replica is
//     not marked down for it, lag being normal. Checkpoints and rows of a physical
//     replica are one snapshot, so the check made on the replica is exact.
//   - Nothing writes through a Router: it only runs SELECTs. OpenReplica opens
//     replica pools whose sessions are read-only as well.
type Router struct {
	primary  *pgxpool.Pool
	replicas []*replica
	next     atomic.Uint64
	opts     RouterOptions
}

type replica struct {
	pool      *pgxpool.Pool
	downUntil atomic.Int64 // unix nanoseconds
}

// RouterOptions tune a Router; zero values take the defaults.
type RouterOptions struct {
	// ReplicaTimeout bounds one read on a replica before the primary is asked (1 s).
	ReplicaTimeout time.Duration
	// Cooldown is how long a failed replica is skipped (5 s).
	Cooldown time.Duration
	// Logger receives replica failures (slog.Default()).
	Logger *slog.Logger
	// Now is the clock of the cooldown (time.Now).
	Now func() time.Time
}

// NewRouter returns a router over the primary and any number of replicas.
func NewRouter(primary *pgxpool.Pool, replicas []*pgxpool.Pool, opts RouterOptions) (*Router, error) {
	if primary == nil {
		return nil, errors.New("read router: nil primary pool")
	}
	if opts.ReplicaTimeout <= 0 {
		opts.ReplicaTimeout = time.Second
	}
	if opts.Cooldown <= 0 {
		opts.Cooldown = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Router{primary: primary, opts: opts}
	for _, p := range replicas {
		if p == nil {
			return nil, errors.New("read router: nil replica pool")
		}
		r.replicas = append(r.replicas, &replica{pool: p})
	}
	return r, nil
}

// OpenReplica opens a pool on a read replica's URL whose sessions are read-only
// (default_transaction_read_only), so that even a mistaken write fails there.
func OpenReplica(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("read replica url: %w", err)
	}
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open read replica: %w", err)
	}
	return pool, nil
}

// Primary returns the primary pool.
func (r *Router) Primary() *pgxpool.Pool { return r.primary }

// pick returns the next healthy replica, or nil.
func (r *Router) pick() *replica {
	n := len(r.replicas)
	if n == 0 {
		return nil
	}
	now := r.opts.Now().UnixNano()
	start := r.next.Add(1)
	for i := range n {
		rep := r.replicas[(start+uint64(i))%uint64(n)]
		if rep.downUntil.Load() <= now {
			return rep
		}
	}
	return nil
}

// routed runs q on a replica when one is healthy and answers acceptably, and on
// the primary otherwise.
func routed[T any](ctx context.Context, r *Router, q func(ctx context.Context, db *pgxpool.Pool) (T, app.Snapshot, error)) (T, app.Snapshot, error) {
	if rep := r.pick(); rep != nil {
		rctx, cancel := context.WithTimeout(ctx, r.opts.ReplicaTimeout)
		v, snap, err := q(rctx, rep.pool)
		cancel()
		switch {
		case err == nil && snap.Includes:
			return v, snap, nil
		case err == nil:
			// The replica lags behind the write the read must include.
		case ctx.Err() != nil:
			var zero T
			return zero, snap, err
		default:
			rep.downUntil.Store(r.opts.Now().Add(r.opts.Cooldown).UnixNano())
			r.opts.Logger.Warn("read replica failed; reading the primary", "cooldown", r.opts.Cooldown.String(), "error", err.Error())
		}
	}
	v, snap, err := q(ctx, r.primary)
	if err != nil && ctx.Err() == nil && unreachable(err) {
		err = fmt.Errorf("%w: %w", app.ErrUnavailable, err)
	}
	return v, snap, err
}

// unreachable reports an error that says the database cannot serve at all (no
// connection, shutting down, out of connections or resources), as opposed to a
// fault of the statement: the api answers it with 503 rather than 500.
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	case errors.As(err, &pe):
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "53") || strings.HasPrefix(pe.Code, "57P")
	}
	return pgconn.SafeToRetry(err)
}
