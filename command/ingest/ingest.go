// Package ingest is the ingest path of API.md "Ingest feeds": a feed is read and
// validated while it is uploaded, valid items travel in batches of up to
// Config.MessageItems per message on the ingest.events topic, and workers turn
// each message's items into UpsertProgram commands of command/app, applied
// together (app.UpsertProgramHandler.HandleBatch). Jobs (not event-sourced) record
// what happened to every item.
//
// # When POST /v1/ingest answers
//
// An HTTP body can only be read while its request lasts, so Service.Submit reads the
// whole feed within the request: it parses and validates the stream, publishes valid
// items in batches as it goes, and returns the job id when the body is consumed. The
// 202 therefore comes at the end of the upload, not at its start, but still before
// anything is written to the event store (workers do that). The alternative,
// spooling the body to a temporary file and answering at once, would answer at the
// end of the upload too (the body must be read either way), with a second copy of
// every feed on local disk and a parse that a crashed instance would lose. Since
// validation and enqueueing run at tens of thousands of items per second, reading in
// the request costs the client nothing noticeable.
//
// Errors found before the job exists (content type, CSV header, a body that is not a
// JSON array) are returned without a job, so the HTTP layer can answer 415/400.
// Everything found later belongs to the job: an invalid item fails alone; a feed
// that breaks off (a JSON array that never closes, an oversized record, a body over
// the size limit, an interrupted upload) marks the job failed while the items read
// before the break are still processed.
//
// # Exactly-once effects on an at-least-once queue
//
// Messages may be delivered more than once (a worker killed before its ack, a
// rebalance). An item is decided against the stored state, so one whose events are
// stored appends nothing when it comes again; every id an item creates and every
// event id it appends derive from (job id, item index); and each item's outcome is
// recorded under (job id, item index), so counts stay exact. A message is acked
// only once all its items' outcomes are recorded.
//
// # Throughput
//
// A bus delivers one message per partition at a time (Watermill SQL, Kafka), and
// an item alone costs a few round trips and a commit, so one item per message
// bounded a worker to partitions / latency (some 300–800 items/s here). So the
// submitter groups items into messages of up to Config.MessageItems (100), and the
// worker applies a message's items together: with the PostgreSQL store, one read
// of their pointers, one of their programs and one transaction (AppendMany,
// written set-wise) per round of items (see app.UpsertProgramHandler.HandleBatch).
//
// # Order
//
// Items are spread over 128 buckets by their external id (bucketOf); a message
// carries items of one bucket, in feed order, keyed by the bucket
// (PartitionKeyMetadata). So items of one external id stay in feed order on one
// partition, within a message (HandleBatch applies them in rounds) and across
// messages; buckets and partitions are processed in parallel (one message in
// flight per partition, Config.Concurrency at most). A bucket's items wait for a
// full message at most Config.ProgressEvery (1 s), or until the feed ends.
package ingest

import (
	"context"
	"errors"
	"time"

	"github.com/mediamesh/mediamesh/command/feed"
)

// Topic is the ingest queue's topic.
const Topic = "ingest.events"

// ConsumerGroup is the consumer group of the ingest workers.
const ConsumerGroup = "ingest-workers"

// PartitionKeyMetadata is the message metadata field that the bus adapters turn into
// the partition key (infra/bus/kafka.PartitionKeyMetadata and
// infra/bus/sql.PartitionKeyMetadata have the same value; their tests check it).
const PartitionKeyMetadata = "partition_key"

// MessageTypeMetadata names the payload's shape in a message's metadata, so a newer
// shape can be told apart from this one.
const MessageTypeMetadata = "message_type"

// MessageType is the shape of an ingest message that carries one item
// (itemMessage): what Submit published before BatchMessageType; workers still
// apply it.
const MessageType = "mediamesh.ingest.item.v1"

// BatchMessageType is the shape of the ingest messages Submit publishes
// (batchMessage): up to Config.MessageItems items of one job and one bucket.
const BatchMessageType = "mediamesh.ingest.batch.v1"

// MaxErrors is how many item errors a job keeps (API.md: the first 1,000); its
// counts stay exact beyond that.
const MaxErrors = 1000

// Errors of Submit that the HTTP layer maps (the same values as command/feed's, so
// errors.Is works with either).
var (
	// ErrUnsupportedContentType: 415.
	ErrUnsupportedContentType = feed.ErrUnsupportedContentType
	// ErrInvalidFeed: 400; nothing was recorded.
	ErrInvalidFeed = feed.ErrInvalidFeed
	// ErrFeedTooLarge: the body is larger than Config.MaxFeedBytes (413). When it is
	// found after the job was recorded, Submit returns the job id with it: the job
	// is failed and the items before the limit are processed.
	ErrFeedTooLarge = errors.New("feed too large")
	// ErrJobNotFound: no job has this id (404).
	ErrJobNotFound = errors.New("ingest job not found")
)

// Status is a job's state (API.md).
type Status string

// The job states. A job is queued until a worker finished its first item, running
// until every enqueued item is done, then completed (no failed item) or
// completed_with_errors. It is failed when the feed broke off or its submission was
// interrupted; the items read before that still run and are counted.
const (
	StatusQueued              Status = "queued"
	StatusRunning             Status = "running"
	StatusCompleted           Status = "completed"
	StatusCompletedWithErrors Status = "completed_with_errors"
	StatusFailed              Status = "failed"
)

// ItemError is one failed item (or, with an empty ExternalID, the place where the
// feed broke off). Line is API.md's line.
type ItemError struct {
	Line       int64  `json:"line"`
	ExternalID string `json:"external_id"`
	Message    string `json:"message"`
}

// Job is GET /v1/ingest/{job_id}'s answer. The JSON names are API.md's; Error,
// CreatedAt and UpdatedAt are additions.
type Job struct {
	ID        string      `json:"job_id"`
	Status    Status      `json:"status"`
	Total     int         `json:"total"`
	Succeeded int         `json:"succeeded"`
	Failed    int         `json:"failed"`
	Errors    []ItemError `json:"errors"`
	// Error says why the job failed as a whole ("" otherwise); it is also among
	// Errors, at its line.
	Error     string    `json:"error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Done reports whether the job will not change any more.
func (j Job) Done() bool {
	switch j.Status {
	case StatusCompleted, StatusCompletedWithErrors:
		return true
	case StatusFailed:
		return j.Succeeded+j.Failed == j.Total
	}
	return false
}

// NewJob is a job as Submit records it.
type NewJob struct {
	ID          string
	Actor       string
	ContentType string
	CreatedAt   time.Time
}

// Progress is a submission's cumulative state: RecordSubmission stores it as is.
type Progress struct {
	// Items counts the feed's items read so far, valid or not.
	Items int
	// Enqueued counts valid items published to the queue.
	Enqueued int
	// Rejected counts items that failed validation (never enqueued).
	Rejected int
	// Done: the feed was read to its end or broke off; Items is final.
	Done bool
	// FeedError is why the feed broke off, if it did.
	FeedError *ItemError
}

// ItemOutcome is what happened to one item, recorded under (JobID, Index).
type ItemOutcome struct {
	JobID      string
	Index      int
	Line       int64
	ExternalID string
	// OK: the item was applied (changed or not). Otherwise Message says why not.
	OK      bool
	Message string
}

// JobRecord is a job as stored: the submission's progress and the workers'
// outcomes, counted. Service.GetJob derives the job's status from it.
type JobRecord struct {
	NewJob
	Progress
	// UpdatedAt is when the submission last recorded its progress (its heartbeat);
	// LastOutcomeAt when a worker last recorded an outcome (zero: none yet).
	UpdatedAt, LastOutcomeAt time.Time
	// Applied counts items whose worker outcome is recorded; Succeeded and
	// ApplyFailed split them.
	Applied, Succeeded, ApplyFailed int
	// Errors are the first MaxErrors failed items (rejected or failed in a
	// worker), in feed order.
	Errors []ItemError
}

// JobStore keeps ingest jobs (PostgreSQL: infra/postgres.IngestJobs). Jobs are
// plain rows, not event-sourced: they describe the ingest process, not the catalog.
type JobStore interface {
	// CreateJob records a new, empty job.
	CreateJob(ctx context.Context, job NewJob) error
	// RecordSubmission stores the submission's cumulative progress and the items
	// it rejected since the last call (JobID set to jobID) (the first MaxErrors rejections of a job
	// are passed, the rest are only counted); it also refreshes the job's
	// updated time, the heartbeat of a running submission.
	RecordSubmission(ctx context.Context, jobID string, p Progress, rejected []ItemOutcome) error
	// RecordOutcomes stores workers' outcomes (of any jobs) in one write. An
	// outcome already recorded for its (JobID, Index) is kept and the new one
	// ignored: that is what keeps counts exact when a message is delivered twice.
	RecordOutcomes(ctx context.Context, outcomes []ItemOutcome) error
	// GetJob returns the job, or ErrJobNotFound.
	GetJob(ctx context.Context, jobID string) (JobRecord, error)
}
