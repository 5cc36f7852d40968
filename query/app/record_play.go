package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
)

// Plays are telemetry: they never enter the event store. POST /v1/plays publishes
// one message on the bus topic EngagementTopic; the engagement projection counts
// it (at most once per session, program and hour) into the buckets that trending
// and popular are computed from.
const (
	// EngagementTopic is the bus topic of plays.
	EngagementTopic = "engagement.events"
	// PlayRecordedType is the message's versioned type name (metadata "type"); a
	// change of shape gets a new version, as events do.
	PlayRecordedType = "mediamesh.engagement.play_recorded.v1"
	// MetadataType and MetadataPartitionKey are the metadata keys of a play
	// message; the partition key (the program id) keeps one program's plays on one
	// partition, the name the bus adapters share (infra/bus/sql, infra/bus/kafka).
	MetadataType         = "type"
	MetadataPartitionKey = "partition_key"
)

// PlayRecorded is the payload of a play message. projections/engagement decodes
// the same JSON (its test holds the two together).
type PlayRecorded struct {
	ProgramID       string    `json:"program_id"`
	EpisodeID       string    `json:"episode_id,omitempty"`
	SessionID       string    `json:"session_id"`
	PositionSeconds *int      `json:"position_seconds,omitempty"`
	OccurredAt      time.Time `json:"occurred_at"`
}

// RecordPlay is POST /v1/plays.
type RecordPlay struct {
	ProgramID       string
	EpisodeID       string
	SessionID       string
	PositionSeconds *int
}

// PlayPublisher publishes bus messages: a Watermill message.Publisher (the SQL and
// Kafka bus adapters) satisfies it.
type PlayPublisher interface {
	Publish(topic string, msgs ...*message.Message) error
}

// Limits of a play.
const (
	maxSessionIDLen = 128
	maxPlayPosition = 86_400
)

// RecordPlayHandler validates a play, checks that its program is visible and
// publishes it.
type RecordPlayHandler struct {
	pub     PlayPublisher
	visible func(ctx context.Context, programID string) error
	now     func() time.Time
}

// NewRecordPlayHandler returns the handler. visible returns nil when the program
// is visible and an ErrNotFound error when not (the cached ProgramByID is the usual
// choice, so a play costs no read-model round trip); now is the clock (nil:
// time.Now).
func NewRecordPlayHandler(pub PlayPublisher, visible func(ctx context.Context, programID string) error, now func() time.Time) (*RecordPlayHandler, error) {
	if pub == nil || visible == nil {
		return nil, fmt.Errorf("record play handler: nil publisher or visibility check")
	}
	if now == nil {
		now = time.Now
	}
	return &RecordPlayHandler{pub: pub, visible: visible, now: now}, nil
}

// Validate checks a play's fields and returns it with canonical ids.
func (q RecordPlay) Validate() (RecordPlay, error) {
	var fields []FieldError
	pid, ok := canonicalUUID(q.ProgramID)
	if !ok {
		fields = append(fields, FieldError{Field: "program_id", Message: "must be a program id (UUID)"})
	}
	q.ProgramID = pid
	if q.EpisodeID != "" {
		eid, ok := canonicalUUID(q.EpisodeID)
		if !ok {
			fields = append(fields, FieldError{Field: "episode_id", Message: "must be an episode id (UUID)"})
		}
		q.EpisodeID = eid
	}
	if n := len(q.SessionID); n == 0 || n > maxSessionIDLen || !visibleASCII(q.SessionID) {
		fields = append(fields, FieldError{Field: "session_id", Message: "must be 1 to 128 visible ASCII characters"})
	}
	if p := q.PositionSeconds; p != nil && (*p < 0 || *p > maxPlayPosition) {
		fields = append(fields, FieldError{Field: "position_seconds", Message: "must be an integer from 0 to 86400"})
	}
	if len(fields) > 0 {
		return RecordPlay{}, &ValidationError{Fields: fields}
	}
	return q, nil
}

// Handle validates q, checks its program and publishes the play. The play is
// counted later by the engagement projection, so the caller answers 202.
func (h *RecordPlayHandler) Handle(ctx context.Context, q RecordPlay) error {
	q, err := q.Validate()
	if err != nil {
		return err
	}
	if err := h.visible(ctx, q.ProgramID); err != nil {
		return fmt.Errorf("play of program %s: %w", q.ProgramID, err)
	}
	payload, err := json.Marshal(PlayRecorded{
		ProgramID: q.ProgramID, EpisodeID: q.EpisodeID, SessionID: q.SessionID,
		PositionSeconds: q.PositionSeconds, OccurredAt: h.now().UTC(),
	})
	if err != nil {
		return fmt.Errorf("encode play: %w", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("play message id: %w", err)
	}
	msg := message.NewMessage(id.String(), payload)
	msg.Metadata.Set(MetadataType, PlayRecordedType)
	msg.Metadata.Set(MetadataPartitionKey, q.ProgramID)
	msg.SetContext(ctx)
	if err := h.pub.Publish(EngagementTopic, msg); err != nil {
		return fmt.Errorf("publish play: %w: %w", ErrUnavailable, err)
	}
	return nil
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
