package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/feed"
)

// Defaults of Config.
const (
	DefaultMaxFeedBytes    = 1 << 30
	DefaultPublishBatch    = 500
	DefaultMessageItems    = 100
	DefaultMessageBytes    = 256 << 10
	maxBufferedBytes       = 8 << 20
	DefaultProgressEvery   = time.Second
	DefaultStaleAfter      = 2 * time.Minute
	DefaultConcurrency     = 16
	DefaultMaxAttempts     = 10
	outcomeBatch           = 256
	defaultBookkeepingTime = 10 * time.Second
)

// Config tunes the service and the worker; zero fields take the defaults.
type Config struct {
	// Topic is the queue's topic (Topic).
	Topic string
	// MaxFeedBytes bounds a feed's body (1 GiB, API.md's default).
	MaxFeedBytes int64
	// Limits bound one item (command/feed's defaults: 1 MiB per line or record).
	Limits feed.Limits
	// PublishBatch is how many items the messages of one Publish call carry at
	// least, unless the feed ended or ProgressEvery passed (500).
	PublishBatch int
	// MessageItems is how many items one message carries at most (100); a
	// worker applies a message's items together (one event-store transaction
	// per round with the PostgreSQL store).
	MessageItems int
	// MessageBytes bounds a message's payload (256 KiB), except that a larger
	// item goes alone.
	MessageBytes int
	// ProgressEvery is how often a running submission records its progress at
	// least (1 s); it also flushes a partial batch then.
	ProgressEvery time.Duration
	// StaleAfter: a submission whose progress is older than this is reported as
	// failed (its process died mid-upload) (2 min).
	StaleAfter time.Duration
	// Concurrency bounds the messages a worker applies at once (16). The bus bounds
	// it too: one message in flight per partition.
	Concurrency int
	// MaxAttempts is how many times a worker tries an item that fails for a reason
	// other than the item itself (store down, conflicts beyond the retries) before
	// it records the item as failed (10).
	MaxAttempts int
	// Logger receives what the service cannot return (slog.Default()).
	Logger *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Topic == "" {
		c.Topic = Topic
	}
	if c.MaxFeedBytes <= 0 {
		c.MaxFeedBytes = DefaultMaxFeedBytes
	}
	if c.PublishBatch <= 0 {
		c.PublishBatch = DefaultPublishBatch
	}
	if c.MessageItems <= 0 {
		c.MessageItems = DefaultMessageItems
	}
	if c.MessageBytes <= 0 {
		c.MessageBytes = DefaultMessageBytes
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = DefaultProgressEvery
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = DefaultStaleAfter
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Service accepts feeds (Submit) and reports jobs (GetJob): what POST /v1/ingest,
// GET /v1/ingest/{job_id} and `mediamesh ingest FILE` call.
type Service struct {
	jobs JobStore
	pub  message.Publisher
	cfg  Config
}

// NewService returns the service; jobs and pub are required.
func NewService(jobs JobStore, pub message.Publisher, cfg Config) (*Service, error) {
	if jobs == nil || pub == nil {
		return nil, errors.New("ingest service: nil job store or publisher")
	}
	return &Service{jobs: jobs, pub: pub, cfg: cfg.withDefaults()}, nil
}

// MaxFeedBytes is the largest feed Submit reads (Config.MaxFeedBytes), so the HTTP
// layer can refuse a larger declared Content-Length before reading anything.
func (s *Service) MaxFeedBytes() int64 { return s.cfg.MaxFeedBytes }

// errBodyTooLarge is the size limiter's error, inside the parsers' errors.
var errBodyTooLarge = errors.New("body too large")

// limitedBody fails reads past max bytes with errBodyTooLarge.
type limitedBody struct {
	r    io.Reader
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte more tells "exactly max" from "more than max".
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// Submit reads a feed from body (see the package documentation for when it
// returns) and returns its job id.
//
//   - ErrUnsupportedContentType, ErrInvalidFeed (wrapped, with the reason), or
//     ErrFeedTooLarge with no job id: nothing was recorded.
//   - A job id and nil: the feed was read; invalid items and a feed that broke off
//     are in the job (a broken-off feed makes it failed).
//   - A job id and an error: the job was recorded but the submission could not
//     finish: ErrFeedTooLarge (413), or the upload or the queue failed. The job is
//     marked failed (best effort) and the items enqueued before still run.
//
// actor is recorded with the job and on every event its items append.
func (s *Service) Submit(ctx context.Context, contentType string, body io.Reader, actor string) (string, error) {
	if _, err := feed.Kind(contentType); err != nil {
		return "", err
	}
	parser, err := feed.NewParser(contentType, &limitedBody{r: body, left: s.cfg.MaxFeedBytes}, s.cfg.Limits)
	if errors.Is(err, errBodyTooLarge) {
		return "", fmt.Errorf("feed is larger than %d bytes: %w", s.cfg.MaxFeedBytes, ErrFeedTooLarge)
	}
	if err != nil {
		return "", err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("new job id: %w", err)
	}
	jobID := id.String()
	if err := s.jobs.CreateJob(ctx, NewJob{ID: jobID, Actor: actor, ContentType: contentType, CreatedAt: s.cfg.Now().UTC()}); err != nil {
		return "", fmt.Errorf("record ingest job: %w", err)
	}
	sub := &submission{s: s, jobID: jobID, actor: actor, lastFlush: s.cfg.Now()}
	return jobID, sub.run(ctx, parser)
}

// submission is one Submit's state. Valid items wait in their bucket (bucketOf)
// until it holds a message's worth (Config.MessageItems or MessageBytes); full
// messages wait in batch until they carry PublishBatch items (or 8 MiB). At
// ProgressEvery and at the end every bucket is sent as it is. So a submission
// holds at most some 16 MiB of items, however large the feed.
type submission struct {
	s          *Service
	jobID      string
	actor      string
	progress   Progress
	buckets    [buckets]pendingBucket
	buffered   int // bytes waiting in buckets
	batch      []*message.Message
	batchItems int
	batchBytes int
	rejected   []ItemOutcome
	kept       int // rejected items passed to the store (at most MaxErrors)
	lastFlush  time.Time
}

// pendingBucket is the encoded items of one bucket not in a message yet.
type pendingBucket struct {
	first int // index of the first item
	items [][]byte
	bytes int
}

func (sub *submission) run(ctx context.Context, parser *feed.Parser) error {
	var runErr error
	for {
		it, err := parser.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			runErr = sub.broke(ctx, err)
			break
		}
		sub.progress.Items++
		if it.Problem != "" {
			sub.progress.Rejected++
			if sub.kept < MaxErrors {
				sub.kept++
				sub.rejected = append(sub.rejected, ItemOutcome{JobID: sub.jobID, Index: it.Index, Line: it.Line, ExternalID: it.ExternalID, Message: it.Problem})
			}
		} else if err := sub.add(it); err != nil {
			return sub.abort(ctx, err)
		}
		if due := sub.s.cfg.Now().Sub(sub.lastFlush) >= sub.s.cfg.ProgressEvery; due || sub.batchItems >= sub.s.cfg.PublishBatch || sub.batchBytes >= maxBufferedBytes {
			if err := sub.flush(ctx, due); err != nil {
				return sub.abort(ctx, err)
			}
		}
	}
	sub.progress.Done = true
	// The last write must land even when the request was cancelled meanwhile.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultBookkeepingTime)
	defer cancel()
	if err := sub.flush(bctx, true); err != nil {
		return sub.abort(ctx, err)
	}
	return runErr
}

// broke records why the feed broke off after its job existed; the items read
// before are flushed by the caller. It returns the error Submit reports (nil when
// the job tells the whole story).
func (sub *submission) broke(ctx context.Context, err error) error {
	line := int64(0)
	var fe *feed.FeedError
	if errors.As(err, &fe) {
		line = fe.Line
	}
	switch {
	case errors.Is(err, errBodyTooLarge):
		sub.progress.FeedError = &ItemError{Line: line, Message: fmt.Sprintf("the feed is larger than %d bytes: it was read up to there", sub.s.cfg.MaxFeedBytes)}
		return fmt.Errorf("feed is larger than %d bytes: %w", sub.s.cfg.MaxFeedBytes, ErrFeedTooLarge)
	case fe != nil && fe.Err == nil:
		sub.progress.FeedError = &ItemError{Line: line, Message: fe.Message}
		return nil
	case ctx.Err() != nil:
		sub.progress.FeedError = &ItemError{Line: line, Message: "the upload was interrupted"}
		return fmt.Errorf("read feed: %w", ctx.Err())
	default:
		sub.progress.FeedError = &ItemError{Line: line, Message: "reading the upload failed"}
		return fmt.Errorf("read feed: %w", err)
	}
}

// add puts a valid item into its bucket, and the bucket into a message when it is
// full (or the buffered items take too much memory: then every bucket).
func (sub *submission) add(it feed.Item) error {
	raw, err := encodeBatchItem(it)
	if err != nil {
		return err
	}
	b := bucketOf(it.Program.ExternalID)
	pb := &sub.buckets[b]
	if len(pb.items) > 0 && pb.bytes+len(raw) > sub.s.cfg.MessageBytes {
		if err := sub.seal(b); err != nil {
			return err
		}
	}
	if len(pb.items) == 0 {
		pb.first = it.Index
	}
	pb.items = append(pb.items, raw)
	pb.bytes += len(raw)
	sub.buffered += len(raw)
	if len(pb.items) >= sub.s.cfg.MessageItems || pb.bytes >= sub.s.cfg.MessageBytes {
		if err := sub.seal(b); err != nil {
			return err
		}
	}
	if sub.buffered > maxBufferedBytes {
		return sub.sealAll()
	}
	return nil
}

// seal turns bucket b's items into a message of the next batch.
func (sub *submission) seal(b int) error {
	pb := &sub.buckets[b]
	if len(pb.items) == 0 {
		return nil
	}
	m, err := newBatchMessage(sub.jobID, sub.actor, b, pb.first, pb.items)
	if err != nil {
		return err
	}
	sub.batch = append(sub.batch, m)
	sub.batchItems += len(pb.items)
	sub.batchBytes += pb.bytes
	sub.buffered -= pb.bytes
	pb.items, pb.bytes = nil, 0
	return nil
}

// sealAll seals every bucket that holds items, in bucket order.
func (sub *submission) sealAll() error {
	for b := range sub.buckets {
		if err := sub.seal(b); err != nil {
			return err
		}
	}
	return nil
}

// flush publishes the batch (after sealing every bucket when all is set), then
// records the progress (with the batch counted) and the rejections since the last
// flush.
func (sub *submission) flush(ctx context.Context, all bool) error {
	if all {
		if err := sub.sealAll(); err != nil {
			return err
		}
	}
	if len(sub.batch) > 0 {
		for _, m := range sub.batch {
			m.SetContext(ctx)
		}
		if err := sub.s.pub.Publish(sub.s.cfg.Topic, sub.batch...); err != nil {
			return fmt.Errorf("publish %d items to %s: %w", sub.batchItems, sub.s.cfg.Topic, err)
		}
		sub.progress.Enqueued += sub.batchItems
		sub.batch, sub.batchItems, sub.batchBytes = sub.batch[:0], 0, 0
	}
	if err := sub.s.jobs.RecordSubmission(ctx, sub.jobID, sub.progress, sub.rejected); err != nil {
		return fmt.Errorf("record ingest job %s: %w", sub.jobID, err)
	}
	sub.rejected = sub.rejected[:0]
	sub.lastFlush = sub.s.cfg.Now()
	return nil
}

// abort ends a submission that cannot go on (the queue or the job store failed, or
// the request was cancelled mid-publish): it marks the job failed, best effort, and
// returns err for Submit to report. Items already published still run.
func (sub *submission) abort(ctx context.Context, err error) error {
	sub.progress.Done = true
	msg := "the submission stopped: the queue or the job store failed"
	if ctx.Err() != nil {
		msg = "the upload was interrupted"
	}
	sub.progress.FeedError = &ItemError{Message: msg}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultBookkeepingTime)
	defer cancel()
	if rerr := sub.s.jobs.RecordSubmission(bctx, sub.jobID, sub.progress, sub.rejected); rerr != nil {
		sub.s.cfg.Logger.Error("ingest: could not mark the job failed", "job_id", sub.jobID, "error", rerr)
	}
	return err
}

// GetJob returns a job with its status derived from its record (see Status).
func (s *Service) GetJob(ctx context.Context, jobID string) (Job, error) {
	if _, err := uuid.Parse(jobID); err != nil {
		return Job{}, fmt.Errorf("ingest job %q: %w", jobID, ErrJobNotFound)
	}
	rec, err := s.jobs.GetJob(ctx, jobID)
	if err != nil {
		return Job{}, err
	}
	return jobOf(rec, s.cfg.Now(), s.cfg.StaleAfter), nil
}

// jobOf derives the API view of a job record at time now.
func jobOf(rec JobRecord, now time.Time, staleAfter time.Duration) Job {
	j := Job{
		ID:        rec.ID,
		Total:     rec.Items,
		Succeeded: rec.Succeeded,
		Failed:    rec.Rejected + rec.ApplyFailed,
		Errors:    rec.Errors,
		CreatedAt: rec.CreatedAt,
		UpdatedAt: rec.UpdatedAt,
	}
	if rec.LastOutcomeAt.After(j.UpdatedAt) {
		j.UpdatedAt = rec.LastOutcomeAt
	}
	if j.Errors == nil {
		j.Errors = []ItemError{}
	}
	feedErr := rec.FeedError
	if feedErr == nil && !rec.Done && now.Sub(rec.UpdatedAt) > staleAfter {
		feedErr = &ItemError{Message: "the submission was interrupted (no progress since " + rec.UpdatedAt.UTC().Format(time.RFC3339) + ")"}
	}
	switch {
	case feedErr != nil:
		j.Status, j.Error = StatusFailed, feedErr.Message
		j.Errors = insertByLine(j.Errors, *feedErr)
	case rec.Done && rec.Applied >= rec.Enqueued:
		j.Status = StatusCompleted
		if j.Failed > 0 {
			j.Status = StatusCompletedWithErrors
		}
	case rec.Applied > 0:
		j.Status = StatusRunning
	default:
		j.Status = StatusQueued
	}
	return j
}

// insertByLine adds the feed's error among the item errors at its line (at the end
// when it has none), keeping at most MaxErrors+1 entries.
func insertByLine(errs []ItemError, e ItemError) []ItemError {
	i := len(errs)
	if e.Line > 0 {
		for i > 0 && errs[i-1].Line > e.Line {
			i--
		}
	}
	out := make([]ItemError, 0, len(errs)+1)
	out = append(out, errs[:i]...)
	out = append(out, e)
	return append(out, errs[i:]...)
}
