package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mediamesh/mediamesh/events"
)

// PoisonError marks an event that can never be applied as it is (it cannot be
// decoded, or it contradicts its own stream): the runtime dead-letters it at once
// instead of retrying it.
type PoisonError struct {
	EventID  string
	Position int64
	Type     string
	Err      error
}

func (e *PoisonError) Error() string {
	return fmt.Sprintf("poison event %s (%s) at position %d: %v", e.EventID, e.Type, e.Position, e.Err)
}

func (e *PoisonError) Unwrap() error { return e.Err }

// Poison wraps err as the PoisonError of env; projections return it from Apply.
func Poison(env events.Envelope, err error) error {
	return &PoisonError{EventID: env.EventID, Position: env.Position, Type: env.Type, Err: err}
}

// poisonIndex returns the index in batch of the event a PoisonError in err names,
// or -1.
func poisonIndex(err error, batch []events.Envelope) int {
	var pe *PoisonError
	if !errors.As(err, &pe) {
		return -1
	}
	for i, e := range batch {
		if e.Position == pe.Position && e.EventID == pe.EventID {
			return i
		}
	}
	return -1
}

type errKind int

const (
	// kindTransient: retry the same work later; nothing is wrong with the events.
	kindTransient errKind = iota
	// kindEvent: probably the event's fault; isolate it and retry it a few times.
	kindEvent
	// kindPoison: the event's fault for certain; dead-letter it now.
	kindPoison
)

// classify decides how the runtime treats an error from a batch transaction.
//
// PostgreSQL errors of class 22 (data exception) and 23 (integrity constraint
// violation) come from what an event carries. Every other server error — connection
// (08), transaction rollback (40: serialization, deadlock), resources (53, 54),
// object state and lock timeouts (55), operator intervention (57), system (58, XX)
// and even schema errors (42: a deploy that is missing a migration) — says nothing
// about the event, so dead-lettering would only spread one outage over many events:
// those are retried until they pass. Network failures are transient too. Errors
// the projection returns itself, other than PoisonError, count as the event's.
func classify(err error) errKind {
	var pe *PoisonError
	if errors.As(err, &pe) {
		return kindPoison
	}
	if errors.Is(err, errCheckpointMissing) {
		return kindTransient
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case len(pgErr.Code) >= 2 && (pgErr.Code[:2] == "22" || pgErr.Code[:2] == "23"):
			return kindEvent
		default:
			return kindTransient
		}
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	switch {
	case errors.As(err, &netErr), errors.As(err, &connectErr),
		pgconn.Timeout(err), pgconn.SafeToRetry(err),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, net.ErrClosed):
		return kindTransient
	}
	return kindEvent
}
