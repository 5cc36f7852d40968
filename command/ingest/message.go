package ingest

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/feed"
)

// messageNamespace is the UUIDv5 namespace of message ids, derived from (job,
// index) so a message keeps its id wherever it is published from. Never change it.
var messageNamespace = uuid.MustParse("8c3d6f2e-1b7a-4e55-9d0c-2f4a6b8e1c37")

// itemMessage is the payload of an ingest message (MessageType v1): one valid item
// with what identifies it. Program is the item in its API.md JSON form.
type itemMessage struct {
	JobID   string       `json:"job_id"`
	Index   int          `json:"index"`
	Line    int64        `json:"line"`
	Actor   string       `json:"actor"`
	Program feed.Program `json:"program"`
}

// newMessage encodes one valid item.
func newMessage(jobID, actor string, it feed.Item) (*message.Message, error) {
	payload, err := json.Marshal(itemMessage{JobID: jobID, Index: it.Index, Line: it.Line, Actor: actor, Program: it.Program})
	if err != nil {
		return nil, fmt.Errorf("encode item %d: %w", it.Index, err)
	}
	id := uuid.NewSHA1(messageNamespace, []byte(jobID+"/"+strconv.Itoa(it.Index))).String()
	m := message.NewMessage(id, payload)
	m.Metadata.Set(PartitionKeyMetadata, it.Program.ExternalID)
	m.Metadata.Set(MessageTypeMetadata, MessageType)
	m.Metadata.Set("job_id", jobID)
	return m, nil
}

// decodeMessage reads an ingest message's payload.
func decodeMessage(m *message.Message) (itemMessage, error) {
	if t := m.Metadata.Get(MessageTypeMetadata); t != "" && t != MessageType {
		return itemMessage{}, fmt.Errorf("message %s has type %q, want %q", m.UUID, t, MessageType)
	}
	var im itemMessage
	if err := json.Unmarshal(m.Payload, &im); err != nil {
		return itemMessage{}, fmt.Errorf("decode message %s: %w", m.UUID, err)
	}
	if _, err := uuid.Parse(im.JobID); err != nil {
		return itemMessage{}, fmt.Errorf("message %s: job id %q: %w", m.UUID, im.JobID, err)
	}
	if im.Index < 0 || im.Index > math.MaxInt32 || im.Line < 0 {
		return itemMessage{}, fmt.Errorf("message %s: item %d at line %d is out of range", m.UUID, im.Index, im.Line)
	}
	return im, nil
}

// command turns the message into the upsert command.
func (im itemMessage) command(messageID string) app.UpsertProgram {
	p := im.Program
	cmd := app.UpsertProgram{
		Meta:       app.Meta{Actor: im.Actor, CorrelationID: im.JobID, CausationID: messageID},
		JobID:      im.JobID,
		Item:       im.Index,
		ExternalID: p.ExternalID,
		Title:      p.Title, Description: p.Description,
		Category: p.Category, Language: p.Language,
		Tags:      p.Tags,
		Published: p.Published,
	}
	for _, e := range p.Episodes {
		cmd.Episodes = append(cmd.Episodes, app.UpsertEpisode{
			ExternalID: e.ExternalID, Title: e.Title, Number: e.Number, Season: e.Season,
			Description: e.Description, DurationSeconds: e.DurationSeconds, Published: e.Published,
		})
	}
	return cmd
}
