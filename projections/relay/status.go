package relay

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Status is what a relay knows about itself without I/O, for metrics and ops.
type Status struct {
	// Active is true while this relay holds the lock and publishes.
	Active bool
	// Checkpoint is the last position this relay saved (or loaded when it became
	// active).
	Checkpoint int64
	// Watermark is the position up to which every event has been acknowledged by the
	// bus; ahead of Checkpoint until the next save. Equal to Checkpoint when not
	// active.
	Watermark int64
	// InFlight is the number of events read but not yet passed by the watermark.
	InFlight int
	// Published counts the events this relay value has had acknowledged, over all
	// its runs (republished ones included).
	Published uint64
	// Runs counts the times this relay became active.
	Runs int
	// LastError is the error of the last failed run, or nil.
	LastError error
}

// Status returns the relay's current state.
func (r *Relay) Status() Status {
	r.mu.Lock()
	s := Status{
		Active:     r.active,
		Checkpoint: r.checkpoint,
		Watermark:  r.checkpoint,
		Runs:       r.runs,
		LastError:  r.lastErr,
		Published:  r.published.Load(),
	}
	tr := r.tr
	r.mu.Unlock()
	if tr != nil {
		s.Watermark, s.InFlight = tr.state()
	}
	return s
}

// Lag is how far the relay is behind the event store.
type Lag struct {
	Status
	// Head is the newest position of the event store's global log.
	Head int64
	// Unpublished is the number of events after the watermark (of the active relay,
	// or the saved checkpoint when this one is a standby), counted up to
	// Config.LagCountLimit; Capped says the count stopped there.
	//
	// Positions are not dense (PostgreSQL's encode a transaction id), so Head minus
	// the watermark is not a number of events: this count is.
	Unpublished int
	Capped      bool
}

// Lag counts the events not yet published. It reads the event store (up to
// LagCountLimit events) and, for a standby relay, the saved checkpoint.
func (r *Relay) Lag(ctx context.Context) (Lag, error) {
	l := Lag{Status: r.Status()}
	if !l.Active {
		cp, err := ReadCheckpoint(ctx, r.db, r.cfg.Name)
		if err != nil {
			return Lag{}, err
		}
		l.Checkpoint, l.Watermark = cp, cp
	}
	head, err := r.log.HeadPosition(ctx)
	if err != nil {
		return Lag{}, fmt.Errorf("relay lag: %w", err)
	}
	l.Head = head
	after := l.Watermark
	for l.Unpublished < r.cfg.LagCountLimit {
		evs, err := r.log.ReadAll(ctx, after, min(r.cfg.BatchSize, r.cfg.LagCountLimit-l.Unpublished))
		if err != nil {
			return Lag{}, fmt.Errorf("relay lag: %w", err)
		}
		if len(evs) == 0 {
			return l, nil
		}
		l.Unpublished += len(evs)
		after = evs[len(evs)-1].Position
	}
	l.Capped = true
	return l, nil
}

// ReadCheckpoint returns the saved checkpoint of the relay called name (0 when it has
// none), for ops tools that do not run the relay.
func ReadCheckpoint(ctx context.Context, db *pgxpool.Pool, name string) (int64, error) {
	return loadCheckpoint(ctx, db, name)
}
