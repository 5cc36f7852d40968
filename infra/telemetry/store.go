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
// span. Everything else goes to s unchanged.
func InstrumentStore(s Store, m *Metrics, tracer trace.Tracer) Store {
	return &instrumentedStore{Store: s, m: m, tracer: tracer}
}

type instrumentedStore struct {
	Store
	m      *Metrics
	tracer trace.Tracer
}

func (s *instrumentedStore) Append(ctx context.Context, streamID string, expected int64, evs []events.Envelope) (events.AppendResult, error) {
	var span trace.Span
	if s.tracer != nil {
		ctx, span = s.tracer.Start(ctx, "eventstore.append", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("mediamesh.stream.id", streamID), attribute.Int("mediamesh.events", len(evs))))
	}
	start := time.Now()
	res, err := s.Store.Append(ctx, streamID, expected, evs)
	result := "ok"
	switch {
	case errors.Is(err, events.ErrVersionConflict):
		result = "conflict"
	case err != nil:
		result = "error"
	}
	s.m.appendDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if span != nil {
		if err != nil {
			span.RecordError(err)
			if result == "error" {
				span.SetStatus(codes.Error, "append failed")
			}
		} else {
			span.SetAttributes(attribute.Int64("mediamesh.position", res.Position), attribute.Int64("mediamesh.stream.version", res.LastVersion))
		}
		span.End()
	}
	return res, err
}

// Unwrap returns the decorated store (for optional interfaces such as
// runtime.EventCounter).
func (s *instrumentedStore) Unwrap() Store { return s.Store }
