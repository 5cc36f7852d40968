package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mediamesh/mediamesh/events"
)

// Metadata fields of a relayed message. The Kafka adapter sends every one as a
// record header, so a consumer can route or skip a message without decoding its
// payload; the payload (the JSON envelope) remains the authority.
const (
	MetaEventID       = "event_id"
	MetaEventType     = "event_type"
	MetaStreamID      = "stream_id"
	MetaStreamVersion = "stream_version"
	MetaPosition      = "position"
	MetaTraceParent   = "traceparent"
	MetaTraceState    = "tracestate"
	// MetaPartitionKey is the bus's partition key field; it must equal
	// infra/bus/kafka.PartitionKeyMetadata (a test checks it: this package does not
	// import infra).
	MetaPartitionKey = "partition_key"
)

// PartitionKey returns the key an event is published under: the id of the program
// it belongs to (events.ProgramIDOf), so everything about one program — its stream
// and its episodes' pointer streams alike — stays in order on one partition. An event
// that names no program, or whose type codec does not know (a newer binary wrote it),
// is keyed by its stream id, which still keeps each stream in order.
func PartitionKey(codec *events.Codec, env events.Envelope) string {
	if ev, err := codec.DecodeEnvelope(env); err == nil {
		if id := events.ProgramIDOf(ev); id != "" {
			return id
		}
	}
	return env.StreamID
}

// NewMessage returns the bus message of env under key: the envelope as JSON payload,
// the event id as message UUID (consumers may deduplicate on it), and the envelope's
// identifying fields and trace context as metadata.
func NewMessage(env events.Envelope, key string) (*message.Message, error) {
	payload, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", env.EventID, err)
	}
	m := message.NewMessage(env.EventID, payload)
	m.Metadata.Set(MetaEventID, env.EventID)
	m.Metadata.Set(MetaEventType, env.Type)
	m.Metadata.Set(MetaStreamID, env.StreamID)
	m.Metadata.Set(MetaStreamVersion, strconv.FormatInt(env.Version, 10))
	m.Metadata.Set(MetaPosition, strconv.FormatInt(env.Position, 10))
	m.Metadata.Set(MetaPartitionKey, key)
	if env.Metadata.TraceParent != "" {
		m.Metadata.Set(MetaTraceParent, env.Metadata.TraceParent)
	}
	if env.Metadata.TraceState != "" {
		m.Metadata.Set(MetaTraceState, env.Metadata.TraceState)
	}
	return m, nil
}

// ErrBadMessage is returned by DecodeMessage for a message that is not a relayed
// event. Redelivering such a message cannot help: a consumer should park it.
var ErrBadMessage = errors.New("not a relayed event")

// DecodeMessage returns the envelope a relayed message carries.
func DecodeMessage(m *message.Message) (events.Envelope, error) {
	var env events.Envelope
	if err := json.Unmarshal(m.Payload, &env); err != nil {
		return events.Envelope{}, fmt.Errorf("decode message %s: %w: %w", m.UUID, ErrBadMessage, err)
	}
	if env.EventID == "" || env.Type == "" || env.StreamID == "" {
		return events.Envelope{}, fmt.Errorf("decode message %s: %w: envelope without event id, type or stream", m.UUID, ErrBadMessage)
	}
	return env, nil
}
