package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultConsistencyWait bounds the wait for a consistency token (API.md: 2 s).
const DefaultConsistencyWait = 2 * time.Second

// ProjectionWaiter wakes a caller once a projection has applied a global position.
// projections/runtime.Waiter implements it with LISTEN/NOTIFY: the wait is a
// blocked goroutine, not a polling loop.
type ProjectionWaiter interface {
	// WaitForPosition returns nil once the serving version of projection name has
	// applied position pos, or an error when ctx ends first.
	WaitForPosition(ctx context.Context, name string, pos int64) error
}

// CheckpointReader reads the serving projections' checkpoints.
type CheckpointReader interface {
	// Checkpoints returns the position of every serving projection by name.
	Checkpoints(ctx context.Context) (map[string]int64, error)
}

// Positions tracks, per projection, the highest position seen: the value of
// X-Projection-Position. A replica or an older cache entry may have read an older
// checkpoint; keeping the maximum makes the header monotonic per projection, as
// API.md asks, while staying informational.
type Positions struct {
	m sync.Map // name -> *atomic.Int64
}

func (p *Positions) counter(name string) *atomic.Int64 {
	if v, ok := p.m.Load(name); ok {
		return v.(*atomic.Int64)
	}
	v, _ := p.m.LoadOrStore(name, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// Observe records that projection name has applied pos and returns the highest
// position known for it.
func (p *Positions) Observe(name string, pos int64) int64 {
	c := p.counter(name)
	for {
		cur := c.Load()
		if pos <= cur {
			return cur
		}
		if c.CompareAndSwap(cur, pos) {
			return pos
		}
	}
}

// Get returns the highest position known for projection name (0 when none).
func (p *Positions) Get(name string) int64 {
	if v, ok := p.m.Load(name); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// consistentRead runs read until its snapshot includes after (a nil after needs no
// check: read runs once). Between attempts it waits, without polling, for
// projection to move: to the write's position first, then past the checkpoint the
// last attempt saw (a row-version check can need a later batch than the position,
// e.g. when partitions are consumed out of global order). The whole wait is bounded
// by wait; running out of it is ErrNotConsistent. Without a waiter, a read that
// does not include the write fails at once.
func consistentRead(ctx context.Context, after *WritePoint, waiter ProjectionWaiter, wait time.Duration, projection string,
	read func(ctx context.Context) (Snapshot, error)) (Snapshot, error) {
	if after == nil {
		return read(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	target := after.Position
	for {
		snap, err := read(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
				return snap, fmt.Errorf("%s at %d: %w", projection, snap.Position, ErrNotConsistent)
			}
			return snap, err
		}
		if snap.Includes {
			return snap, nil
		}
		if waiter == nil {
			return snap, fmt.Errorf("%s at %d, write at %d: %w", projection, snap.Position, after.Position, ErrNotConsistent)
		}
		target = max(target, snap.Position+1)
		if err := waiter.WaitForPosition(ctx, projection, target); err != nil {
			if ctx.Err() != nil {
				return snap, fmt.Errorf("%s at %d, write at %d: %w", projection, snap.Position, after.Position, ErrNotConsistent)
			}
			return snap, fmt.Errorf("wait for %s: %w", projection, err)
		}
	}
}
