// Package app is the write side's application layer: one file per command with its
// handler, and the editorial reads that load aggregates from the event store.
//
// Handlers load the aggregate from its stream, let it decide, and append the
// resulting events with the stream's expected version. Without an expected version
// from the client (If-Match) a handler retries a bounded number of times on a
// version conflict; with one, a mismatch is ErrPreconditionFailed.
package app

import (
	"context"
	"errors"

	"github.com/mediamesh/mediamesh/events"
)

// EventStore is what the write side needs of an event store.
type EventStore interface {
	// Append writes evs to the stream with optimistic concurrency
	// (events.ExpectAny, events.ExpectNoStream or an exact version). A conflict
	// returns events.ErrVersionConflict and writes nothing. Appending event ids that
	// are already stored returns the original result and writes nothing.
	Append(ctx context.Context, streamID string, expectedVersion int64, evs []events.Envelope) (events.AppendResult, error)
	// ReadStream returns a stream's events, oldest first, or events.ErrStreamNotFound.
	ReadStream(ctx context.Context, streamID string) ([]events.Envelope, error)
}

// Errors the api maps to HTTP statuses. Aggregate rule errors live in command/program.
var (
	// ErrNotFound: the program or episode does not exist (404).
	ErrNotFound = errors.New("not found")
	// ErrPreconditionFailed: the If-Match version is not the stream's version (412).
	ErrPreconditionFailed = errors.New("precondition failed")
)

// Meta is what every command carries besides its own fields.
type Meta struct {
	// Actor is the subject of the caller's token.
	Actor string
	// IdempotencyKey, when set, is the caller's key already scoped to the caller and
	// route; event ids (and the ids of created programs and episodes) are derived
	// from it, so a retried command cannot append twice.
	IdempotencyKey string
	// ExpectedVersion is the If-Match version, or nil to apply to the current version.
	ExpectedVersion *int64
	CorrelationID   string
	CausationID     string
	TraceParent     string
	TraceState      string
}

// Result is what a command reports.
type Result struct {
	// ID is the program's or episode's id; ProgramID is set for episode commands.
	ID        string
	ProgramID string
	// StreamID, Version and Position name the write (for a command that changed
	// nothing: the stream's current version and the position of its last event).
	StreamID string
	Version  int64
	Position int64
	// Changed is false when the command changed nothing and appended nothing.
	Changed bool
	// Created is true for a command that created the program or episode (201).
	Created bool
}

// ErrIdempotencyKeyReused: the command's Idempotency-Key already produced events of a
// different command (another stream or another program), so its derived event ids
// collide with stored ones. Nothing was written (409).
var ErrIdempotencyKeyReused = errors.New("idempotency key reused for a different command")
