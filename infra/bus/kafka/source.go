package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/mediamesh/mediamesh/events"
)

// Defaults of SourceOptions.
const (
	DefaultSourceBatchSize = 1000
	DefaultSourceBatchWait = 50 * time.Millisecond
)

// SourceOptions tune a Source; zero values take the defaults.
type SourceOptions struct {
	// Topic is the topic consumed (default TopicContentEvents).
	Topic string
	// BatchSize is the most messages of one partition handed over at once
	// (default DefaultSourceBatchSize).
	BatchSize int
	// BatchWait is how long the first buffered message of a partition waits for
	// more (default DefaultSourceBatchWait).
	BatchWait time.Duration
	// Logger receives consumer-group errors and skipped messages (default
	// slog.Default()).
	Logger *slog.Logger
}

// Source is the Kafka mode's feed of the projection runtime: it consumes
// content.events (the relay's messages: the JSON envelope as the value, keyed by
// program) in one consumer group per projection and hands over batches. It
// implements projections/runtime.Stream.
//
// It uses Sarama's consumer group directly rather than the Watermill subscriber of
// this package: Watermill delivers one message per partition at a time and marks
// its offset on Ack, so batching there would mean acking messages before the
// projection's transaction commits. Here a partition's messages are gathered into a
// batch (up to BatchSize, or BatchWait after the first one), handed to the
// projection, and only after the handler returned nil — after its database commit —
// is the last offset marked and committed, synchronously. A crash or a rebalance
// therefore redelivers at most the batch in flight (the projections are
// idempotent), and never loses one.
//
// A message whose value is not a relayed envelope is logged and skipped (its offset
// committed with its batch): only the relay writes content.events, so such a message
// is no event of the store, and the event store remains the source of truth for a
// rebuild.
type Source struct {
	cfg  Config
	opts SourceOptions
}

// NewSource returns a source on c's brokers.
func NewSource(c Config, opts SourceOptions) (*Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if opts.Topic == "" {
		opts.Topic = TopicContentEvents
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultSourceBatchSize
	}
	if opts.BatchWait <= 0 {
		opts.BatchWait = DefaultSourceBatchWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Source{cfg: c.withDefaults(), opts: opts}, nil
}

// Consume consumes the topic in consumer group GroupName(name) ("catalog.v1" gives
// "mediamesh.projection.catalog.v1") until ctx ends, handing each partition's
// batches to handle; batches of different partitions may be handled concurrently.
// It returns ctx's error when ctx ends, or the consumer group's error when it
// fails (the caller consumes again after a backoff).
func (s *Source) Consume(ctx context.Context, name string, handle func(context.Context, []events.Envelope) error) error {
	group := GroupName(name)
	if !groupNamePattern.MatchString(group) {
		return fmt.Errorf("kafka source: consumer group %q: %w", group, errBadGroup)
	}
	sc, err := NewSaramaConfig(s.cfg)
	if err != nil {
		return err
	}
	// Offsets are committed synchronously after each handled batch.
	sc.Consumer.Offsets.AutoCommit.Enable = false
	sc.ChannelBufferSize = max(sc.ChannelBufferSize, s.opts.BatchSize)
	cg, err := sarama.NewConsumerGroup(s.cfg.Brokers, group, sc)
	if err != nil {
		return fmt.Errorf("kafka source: consumer group %s: %w", group, err)
	}
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for err := range cg.Errors() {
			if ctx.Err() == nil {
				s.opts.Logger.Warn("kafka consumer group error", "group", group, "error", err)
			}
		}
	}()
	defer func() { cg.Close(); <-errsDone }()
	h := &claimHandler{src: s, group: group, handle: handle}
	for {
		if err := cg.Consume(ctx, []string{s.opts.Topic}, h); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("kafka source: consume %s as %s: %w", s.opts.Topic, group, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A rebalance ended the session: join again.
	}
}

// claimHandler is the sarama.ConsumerGroupHandler of one Consume call.
type claimHandler struct {
	src    *Source
	group  string
	handle func(context.Context, []events.Envelope) error
}

func (*claimHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (*claimHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim batches one partition's messages and commits each batch's last
// offset after handle accepted it. A batch handle refuses is handed over again
// after a pause until it is accepted or the session ends: returning instead would
// leave the partition assigned to this member but consumed by nobody until the next
// rebalance. Messages buffered when the session ends (a rebalance) are left to the
// partition's next owner.
func (h *claimHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	opts := h.src.opts
	var (
		batch   = make([]events.Envelope, 0, opts.BatchSize)
		last    *sarama.ConsumerMessage
		pending int // messages since the last commit, skipped ones included
	)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	// flush hands the batch over and commits; false when the session ended first.
	flush := func() bool {
		if pending == 0 {
			return true
		}
		for attempt := 0; len(batch) > 0; attempt++ {
			err := h.handle(ctx, batch)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return false
			}
			opts.Logger.Warn("kafka source: batch refused, handing it over again", "group", h.group, "topic", claim.Topic(),
				"partition", claim.Partition(), "last_offset", last.Offset, "error", err)
			pause := time.NewTimer(min(100*time.Millisecond<<min(attempt, 6), 5*time.Second))
			select {
			case <-pause.C:
			case <-ctx.Done():
				pause.Stop()
				return false
			}
		}
		sess.MarkMessage(last, "")
		sess.Commit()
		batch = make([]events.Envelope, 0, opts.BatchSize) // handle may keep the old one
		last, pending = nil, 0
		return true
	}
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			env, err := decodeEnvelope(msg.Value)
			if err != nil {
				opts.Logger.Error("kafka source: skipping a message that is not a relayed event", "group", h.group,
					"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "error", err)
			} else {
				batch = append(batch, env)
			}
			last = msg
			pending++
			if pending == 1 {
				timer.Reset(opts.BatchWait)
			}
			if pending >= opts.BatchSize {
				timer.Stop()
				if !flush() {
					return nil
				}
			}
		case <-timer.C:
			if !flush() {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// errNotEnvelope: a content.events message that is not a relayed envelope.
var errNotEnvelope = errors.New("not a relayed envelope")

// decodeEnvelope reads a relayed message's value (projections/relay.NewMessage:
// the envelope as JSON).
func decodeEnvelope(value []byte) (events.Envelope, error) {
	var env events.Envelope
	if err := json.Unmarshal(value, &env); err != nil {
		return env, fmt.Errorf("%w: %w", errNotEnvelope, err)
	}
	if env.EventID == "" || env.Type == "" || env.StreamID == "" || env.Position <= 0 {
		return env, fmt.Errorf("%w: no event id, type, stream or position", errNotEnvelope)
	}
	return env, nil
}
