package events

import "errors"

// Expected versions for an append, besides an exact stream version (≥ 1).
const (
	// ExpectAny appends whatever the stream's version is.
	ExpectAny int64 = -1
	// ExpectNoStream appends only when the stream has no events yet.
	ExpectNoStream int64 = 0
)

// ErrVersionConflict is returned by an append whose expected version does not match
// the stream's current version. Nothing was written.
var ErrVersionConflict = errors.New("version conflict")

// ErrStreamNotFound is returned when reading a stream that has no events.
var ErrStreamNotFound = errors.New("stream not found")

// AppendResult names what an append wrote (or, for a retried append whose event ids
// were already stored, what the original append wrote).
type AppendResult struct {
	StreamID string `json:"stream_id"`
	// FirstVersion and LastVersion are the versions of the first and last appended
	// event; LastVersion is the stream's version after the append.
	FirstVersion int64 `json:"first_version"`
	LastVersion  int64 `json:"last_version"`
	// Position is the global position of the last appended event.
	Position int64 `json:"position"`
}
