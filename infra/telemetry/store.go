package telemetry

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Store is an event store as the composition root holds it: the write side's port
// and the global log (both adapters implement it).
type Store interface {
	app.EventStore
	runtime.Source
}

// InstrumentStore returns s with every Append timed into
// mediamesh_eventstore_append_duration_seconds{result="ok"|"conflict"|"error"} and,
// with a tracer, traced as a client span "eventstore.append" under the request's
// span. When s appends to several streams at once (app.MultiStreamAppender: the
// PostgreSQL store), so does the returned store, each AppendMany timed into the
// same histogram and traced as "eventstore.append_many"; ReadStreams
// (app.MultiStreamReader) is forwarded too. Everything else goes to s unchanged.
func InstrumentStore(s Store, m *Metrics, tracer trace.Tracer) Store {
	is := &instrumentedStore{Store: s, m: m, tracer: tracer}
	if multi, ok := s.(app.MultiStreamAppender); ok {
		return &instrumentedMultiStore{instrumentedStore: is, multi: multi}
	}
	return is
}

type instrumentedStore struct {
	Store
	m      *Metrics
	tracer trace.Tracer
}

func (s *instrumentedStore) Append(ctx context.Context, streamID string, expected int64, evs []events.Envelope) (events.AppendResult, error) {
	ctx, span := s.start(ctx, "eventstore.append", attribute.String("mediamesh.stream.id", streamID), attribute.Int("mediamesh.events", len(evs)))
	start := time.Now()
	res, err := s.Store.Append(ctx, streamID, expected, evs)
	s.end(span, start, err, attribute.Int64("mediamesh.position", res.Position), attribute.Int64("mediamesh.stream.version", res.LastVersion))
	return res, err
}

// start opens the client span of one store call when there is a tracer.
func (s *instrumentedStore) start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if s.tracer == nil {
		return ctx, nil
	}
	return s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// end times an append by its result and ends its span (ok carries the
// attributes of a success).
func (s *instrumentedStore) end(span trace.Span, start time.Time, err error, ok ...attribute.KeyValue) {
	result := "ok"
	switch {
	case errors.Is(err, events.ErrVersionConflict):
		result = "conflict"
	case err != nil:
		result = "error"
	}
	s.m.appendDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		if result == "error" {
			span.SetStatus(codes.Error, "append failed")
		}
	} else {
		span.SetAttributes(ok...)
	}
	span.End()
}

// ReadStreams reads several streams: in one call when the store can
// (app.MultiStreamReader), else one by one.
func (s *instrumentedStore) ReadStreams(ctx context.Context, streamIDs []string) (map[string][]events.Envelope, error) {
	if r, ok := s.Store.(app.MultiStreamReader); ok {
		return r.ReadStreams(ctx, streamIDs)
	}
	out := make(map[string][]events.Envelope, len(streamIDs))
	for _, id := range streamIDs {
		envs, err := s.Store.ReadStream(ctx, id)
		if errors.Is(err, events.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[id] = envs
	}
	return out, nil
}

// instrumentedMultiStore is an instrumentedStore over a store with AppendMany.
type instrumentedMultiStore struct {
	*instrumentedStore
	multi app.MultiStreamAppender
}

// AppendMany implements app.MultiStreamAppender: one observation and one span per
// call, whatever its streams.
func (s *instrumentedMultiStore) AppendMany(ctx context.Context, parts []events.StreamAppend) ([]events.AppendResult, error) {
	n := 0
	for _, p := range parts {
		n += len(p.Events)
	}
	ctx, span := s.start(ctx, "eventstore.append_many", attribute.Int("mediamesh.streams", len(parts)), attribute.Int("mediamesh.events", n))
	start := time.Now()
	res, err := s.multi.AppendMany(ctx, parts)
	var last int64
	for _, r := range res {
		last = max(last, r.Position)
	}
	s.end(span, start, err, attribute.Int64("mediamesh.position", last))
	return res, err
}

// Unwrap returns the decorated store (for optional interfaces such as
// runtime.EventCounter).
func (s *instrumentedStore) Unwrap() Store { return s.Store }
