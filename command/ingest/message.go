package ingest

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
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

// itemMessage is the payload of an ingest message of MessageType: one valid item
// with what identifies it. Program is the item in its API.md JSON form. Submit
// publishes batches (batchMessage) now; workers still read this shape.
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
	m := message.NewMessage(itemID(jobID, it.Index), payload)
	m.Metadata.Set(PartitionKeyMetadata, it.Program.ExternalID)
	m.Metadata.Set(MessageTypeMetadata, MessageType)
	m.Metadata.Set("job_id", jobID)
	return m, nil
}

// itemID is the id of item index of a job: the id of its own message in
// MessageType's shape, and the causation id of its events in either shape.
func itemID(jobID string, index int) string {
	return uuid.NewSHA1(messageNamespace, []byte(jobID+"/"+strconv.Itoa(index))).String()
}

// batchMessage is the payload of an ingest message of BatchMessageType: several
// valid items of one job, all of one bucket (bucketOf), in feed order.
type batchMessage struct {
	JobID string      `json:"job_id"`
	Actor string      `json:"actor"`
	Items []batchItem `json:"items"`
}

// batchItem is one item of a batchMessage.
type batchItem struct {
	Index   int          `json:"index"`
	Line    int64        `json:"line"`
	Program feed.Program `json:"program"`
}

// buckets is how many partition keys the items of a feed are spread over: an
// item's bucket derives from its external id alone, so items of one external id
// share a key, and therefore a partition and an order, whatever message carries
// them. 128 keys spread evenly enough over 8 or 10 partitions. Never lower it
// while messages of the previous count may be queued.
const buckets = 128

// bucketOf returns the bucket of an external id (FNV-1a).
func bucketOf(externalID string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(externalID))
	return int(h.Sum32() % buckets)
}

// encodeBatchItem encodes one valid item as it goes into a batch message.
func encodeBatchItem(it feed.Item) ([]byte, error) {
	raw, err := json.Marshal(batchItem{Index: it.Index, Line: it.Line, Program: it.Program})
	if err != nil {
		return nil, fmt.Errorf("encode item %d: %w", it.Index, err)
	}
	return raw, nil
}

// newBatchMessage builds one message of BatchMessageType from encoded items (of one
// bucket, in feed order, at least one, the first being item first): its id derives
// from (job, first item), its partition key is the bucket's.
func newBatchMessage(jobID, actor string, bucket, first int, items [][]byte) (*message.Message, error) {
	head, err := json.Marshal(struct {
		JobID string `json:"job_id"`
		Actor string `json:"actor"`
	}{jobID, actor})
	if err != nil {
		return nil, fmt.Errorf("encode batch of item %d: %w", first, err)
	}
	size := len(head) + len(`,"items":[]`) + len(items)
	for _, it := range items {
		size += len(it)
	}
	payload := make([]byte, 0, size)
	payload = append(payload, head[:len(head)-1]...) // without its closing brace
	payload = append(payload, `,"items":[`...)
	for k, it := range items {
		if k > 0 {
			payload = append(payload, ',')
		}
		payload = append(payload, it...)
	}
	payload = append(payload, "]}"...)
	id := uuid.NewSHA1(messageNamespace, []byte(jobID+"/batch/"+strconv.Itoa(first))).String()
	m := message.NewMessage(id, payload)
	m.Metadata.Set(PartitionKeyMetadata, "ingest-bucket-"+strconv.Itoa(bucket))
	m.Metadata.Set(MessageTypeMetadata, BatchMessageType)
	m.Metadata.Set("job_id", jobID)
	return m, nil
}

// decodeItems reads an ingest message of either shape into its items, with the
// causation id of each item's events.
func decodeItems(m *message.Message) ([]itemMessage, []string, error) {
	if m.Metadata.Get(MessageTypeMetadata) != BatchMessageType {
		im, err := decodeMessage(m)
		if err != nil {
			return nil, nil, err
		}
		return []itemMessage{im}, []string{m.UUID}, nil
	}
	var bm batchMessage
	if err := json.Unmarshal(m.Payload, &bm); err != nil {
		return nil, nil, fmt.Errorf("decode message %s: %w", m.UUID, err)
	}
	if _, err := uuid.Parse(bm.JobID); err != nil {
		return nil, nil, fmt.Errorf("message %s: job id %q: %w", m.UUID, bm.JobID, err)
	}
	if len(bm.Items) == 0 {
		return nil, nil, fmt.Errorf("message %s carries no items", m.UUID)
	}
	ims := make([]itemMessage, len(bm.Items))
	causes := make([]string, len(bm.Items))
	for k, it := range bm.Items {
		if it.Index < 0 || it.Index > math.MaxInt32 || it.Line < 0 {
			return nil, nil, fmt.Errorf("message %s: item %d at line %d is out of range", m.UUID, it.Index, it.Line)
		}
		ims[k] = itemMessage{JobID: bm.JobID, Index: it.Index, Line: it.Line, Actor: bm.Actor, Program: it.Program}
		causes[k] = itemID(bm.JobID, it.Index)
	}
	return ims, causes, nil
}

// decodeMessage reads the payload of an ingest message of MessageType.
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
