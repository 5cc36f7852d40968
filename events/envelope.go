package events

import (
	"encoding/json"
	"time"
)

// Event is one domain fact. EventType returns the stored, versioned type name; it is
// a constant per type, written by hand.
type Event interface {
	EventType() string
}

// Metadata travels with every event: who caused it, why, and the trace it belongs to.
type Metadata struct {
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
	Actor         string `json:"actor,omitempty"`
	// TraceParent and TraceState are the W3C trace context of the request that
	// recorded the event, so a projection can continue the trace.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
}

// Envelope is an event as it is appended and as it is read back.
//
// On append, the caller sets EventID, Type (or Event), OccurredAt, Metadata and Data;
// the store assigns StreamID, Version and Position. On read every field is set.
//
// Versions count a stream's events from 1; Position is the event's place in the
// store's global log (strictly increasing in the order readers see events, but not
// necessarily dense).
type Envelope struct {
	EventID    string          `json:"event_id"`
	Type       string          `json:"type"`
	StreamID   string          `json:"stream_id"`
	Version    int64           `json:"version"`
	Position   int64           `json:"position"`
	OccurredAt time.Time       `json:"occurred_at"`
	Metadata   Metadata        `json:"metadata"`
	Data       json.RawMessage `json:"data"`
}
