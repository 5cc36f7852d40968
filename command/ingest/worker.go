package ingest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/program"
)

// Worker consumes the ingest queue (`serve --role ingest`): each message's items
// are applied with app.UpsertProgramHandler.HandleBatch, their outcomes recorded in
// the job, and only then the message is acknowledged. Several workers (processes) may run in one consumer group.
type Worker struct {
	jobs   JobStore
	sub    message.Subscriber
	upsert app.UpsertProgramHandler
	cfg    Config

	mu       sync.Mutex
	attempts map[string]int // message id -> failed attempts, while in flight
}

// NewWorker returns a worker that applies items to store; jobs and sub are required
// (sub must consume in ConsumerGroup). opts go to the upsert handler.
func NewWorker(jobs JobStore, sub message.Subscriber, store app.EventStore, cfg Config, opts ...app.Option) (*Worker, error) {
	if jobs == nil || sub == nil || store == nil {
		return nil, errors.New("ingest worker: nil job store, subscriber or event store")
	}
	return &Worker{
		jobs: jobs, sub: sub, upsert: app.NewUpsertProgramHandler(store, opts...),
		cfg: cfg.withDefaults(), attempts: map[string]int{},
	}, nil
}

// Run consumes until ctx ends, then returns nil after the items in flight stopped
// (an item cut short is neither acknowledged nor recorded: it is delivered again,
// to this worker or another, and its derived ids make that safe). A subscription
// that fails is opened again after a pause.
func (w *Worker) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := w.consume(ctx)
		if ctx.Err() != nil {
			return nil
		}
		pause := min(time.Duration(1<<min(attempt, 5))*100*time.Millisecond, 3*time.Second)
		w.cfg.Logger.Warn("ingest: subscription ended, subscribing again", "topic", w.cfg.Topic, "error", err, "pause", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
	}
}

func (w *Worker) consume(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel() // stops the outcome writer and the items in flight
		wg.Wait()
	}()
	msgs, err := w.sub.Subscribe(ctx, w.cfg.Topic)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", w.cfg.Topic, err)
	}
	out := &outcomeWriter{jobs: w.jobs, reqs: make(chan outcomeReq), max: outcomeBatch}
	wg.Add(1)
	go func() {
		defer wg.Done()
		out.run(ctx)
	}()
	sem := make(chan struct{}, w.cfg.Concurrency)
	for {
		var m *message.Message
		var ok bool
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok = <-msgs:
			if !ok {
				return errors.New("subscription closed")
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w.handle(ctx, m, out)
		}()
	}
}

// handle applies one message's items together (app.UpsertProgramHandler.
// HandleBatch) and acknowledges it once their outcomes are recorded. An item
// that failed for a reason other than itself (the store, conflicts beyond the
// retries) sends the whole message back (nack) until MaxAttempts, then it is
// recorded as failed: the items that did apply are applied again on redelivery,
// which appends nothing (they match the stored state).
func (w *Worker) handle(ctx context.Context, m *message.Message, out *outcomeWriter) {
	ims, causes, err := decodeItems(m)
	if err != nil {
		// Not ours to apply nor to count: no job can be named. Dropping it is the
		// only way to let the partition go on.
		w.cfg.Logger.Error("ingest: dropping a message that cannot be decoded", "message_id", m.UUID, "error", err)
		m.Ack()
		return
	}
	cmds := make([]app.UpsertProgram, len(ims))
	for k, im := range ims {
		cmds[k] = im.command(causes[k])
	}
	res := w.upsert.HandleBatch(ctx, cmds)
	if ctx.Err() != nil {
		return
	}
	outcomes := make([]ItemOutcome, len(ims))
	var retry []int // items that failed, not by their own fault
	for k, im := range ims {
		o := ItemOutcome{JobID: im.JobID, Index: im.Index, Line: im.Line, ExternalID: im.Program.ExternalID, OK: res[k].Err == nil}
		if err := res[k].Err; err != nil {
			if itemFault(err) {
				o.Message = problemOf(err)
			} else {
				retry = append(retry, k)
			}
		}
		outcomes[k] = o
	}
	if len(retry) > 0 {
		first := ims[retry[0]]
		n := w.failed(m.UUID)
		if n < w.cfg.MaxAttempts {
			w.cfg.Logger.Warn("ingest: items failed, the message will be delivered again", "job_id", first.JobID, "index", first.Index, "failed", len(retry), "attempt", n, "error", res[retry[0]].Err)
			m.Nack()
			return
		}
		w.cfg.Logger.Error("ingest: items failed too often, recording them as failed", "job_id", first.JobID, "index", first.Index, "failed", len(retry), "attempts", n, "error", res[retry[0]].Err)
		for _, k := range retry {
			outcomes[k].Message = fmt.Sprintf("not applied after %d attempts: %v", n, res[k].Err)
		}
	}
	if err := out.record(ctx, outcomes); err != nil {
		if ctx.Err() == nil {
			w.cfg.Logger.Warn("ingest: recording outcomes failed, the message will be delivered again", "job_id", ims[0].JobID, "index", ims[0].Index, "error", err)
			m.Nack()
		}
		return
	}
	w.forget(m.UUID)
	m.Ack()
}

func (w *Worker) failed(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.attempts[id]++
	return w.attempts[id]
}

func (w *Worker) forget(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.attempts, id)
}

// itemFault reports whether err is the item's own fault: applying it again cannot
// succeed, so it is recorded as failed at once.
func itemFault(err error) bool {
	var ve *program.ValidationError
	return errors.As(err, &ve) ||
		errors.Is(err, program.ErrInvalidState) ||
		errors.Is(err, program.ErrDuplicateEpisodeNumber) ||
		errors.Is(err, program.ErrEpisodeNotFound) ||
		errors.Is(err, app.ErrIdempotencyKeyReused)
}

// problemOf is an item error's message: the invalid fields, or the rule's message.
func problemOf(err error) string {
	var ve *program.ValidationError
	if errors.As(err, &ve) {
		parts := make([]string, len(ve.Fields))
		for i, f := range ve.Fields {
			parts[i] = f.Field + ": " + f.Message
		}
		return strings.Join(parts, "; ")
	}
	return err.Error()
}

// outcomeWriter records outcomes for all of a worker's handlers with one writer:
// whatever queues up while a write is in flight goes into the next write, so a busy
// worker pays one round trip and one commit per batch of items, not per item.
type outcomeWriter struct {
	jobs JobStore
	reqs chan outcomeReq
	max  int
}

type outcomeReq struct {
	os   []ItemOutcome
	done chan error
}

func (w *outcomeWriter) run(ctx context.Context) {
	for {
		var batch []outcomeReq
		select {
		case <-ctx.Done():
			return
		case r := <-w.reqs:
			batch = append(batch, r)
		}
	more:
		for len(batch) < w.max {
			select {
			case r := <-w.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		var outcomes []ItemOutcome
		for _, r := range batch {
			outcomes = append(outcomes, r.os...)
		}
		err := w.jobs.RecordOutcomes(ctx, outcomes)
		for _, r := range batch {
			r.done <- err
		}
	}
}

// record waits until os are stored (or ctx ends).
func (w *outcomeWriter) record(ctx context.Context, os []ItemOutcome) error {
	r := outcomeReq{os: os, done: make(chan error, 1)}
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
