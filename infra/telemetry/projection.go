package telemetry

import (
	"context"
	"strconv"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Bounds on the spans of one batch.
const (
	// maxLinks bounds the links of a batch span to the events' own traces.
	maxLinks = 128
	// maxEventSpans: batches of at most this many events get one child span per
	// traced event, in the event's own trace (a command's trace then shows the
	// projection applying its event). Larger batches — catching up, rebuilds — get
	// links only, so a replay of millions of events does not emit millions of spans.
	maxEventSpans = 100
)

// ProjectionOptions say what InstrumentProjection records.
type ProjectionOptions struct {
	// Tracer makes the spans (nil: none).
	Tracer trace.Tracer
	// Freshness records mediamesh_freshness_seconds{sink=<projection name>} for every
	// applied event. Off for a rebuild's replay, whose events were recorded long
	// ago: they would measure the rebuild, not the pipeline.
	Freshness bool
}

// InstrumentProjection returns p with its batches traced and counted: a span
// "projection.apply <name>" per batch (kind consumer; attributes projection,
// version, batch size and positions; linked to the traces of its events), a child
// span in each event's own trace for small batches, the events counted in
// mediamesh_projection_events_applied_total, and, with o.Freshness, the freshness
// of each event. The event's trace context comes from its metadata, which the
// command stored and the Kafka relay carries as headers, so a trace runs from the
// HTTP request to the projection that applies it.
//
// Freshness is observed when the batch's writes are done, just before the
// runtime commits them (a few milliseconds early; a batch that then fails to
// commit is observed again on its retry).
func InstrumentProjection(p runtime.Projection, m *Metrics, o ProjectionOptions) runtime.Projection {
	return &instrumented{Projection: p, m: m, o: o, version: strconv.Itoa(p.Version())}
}

type instrumented struct {
	runtime.Projection
	m       *Metrics
	o       ProjectionOptions
	version string
}

// Unwrap returns the instrumented projection.
func (p *instrumented) Unwrap() runtime.Projection { return p.Projection }

func (p *instrumented) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	var (
		span   trace.Span
		events []trace.Span
	)
	if p.o.Tracer != nil && len(batch) > 0 {
		links := make([]trace.Link, 0, min(len(batch), maxLinks))
		for _, e := range batch {
			if len(links) == maxLinks {
				break
			}
			if sc := EventSpanContext(e); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc})
			}
		}
		ctx, span = p.o.Tracer.Start(ctx, "projection.apply "+p.Name(), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithLinks(links...), trace.WithAttributes(
				attribute.String("mediamesh.projection", p.Name()),
				attribute.Int("mediamesh.projection.version", p.Version()),
				attribute.Int("messaging.batch.message_count", len(batch)),
				attribute.Int64("mediamesh.position.first", batch[0].Position),
				attribute.Int64("mediamesh.position.last", batch[len(batch)-1].Position),
			))
		if len(batch) <= maxEventSpans && span.IsRecording() {
			for _, e := range batch {
				ectx := ContextFromTraceParent(context.Background(), e.Metadata.TraceParent, e.Metadata.TraceState)
				if !trace.SpanContextFromContext(ectx).IsValid() {
					continue
				}
				_, es := p.o.Tracer.Start(ectx, "project "+e.Type, trace.WithSpanKind(trace.SpanKindConsumer),
					trace.WithLinks(trace.Link{SpanContext: span.SpanContext()}),
					trace.WithAttributes(
						attribute.String("mediamesh.projection", p.Name()),
						attribute.String("mediamesh.event.id", e.EventID),
						attribute.String("mediamesh.stream.id", e.StreamID),
						attribute.Int64("mediamesh.stream.version", e.Version),
						attribute.Int64("mediamesh.position", e.Position),
					))
				events = append(events, es)
			}
		}
	}
	err := p.Projection.Apply(ctx, tx, batch)
	for _, es := range events {
		if err != nil {
			es.SetStatus(codes.Error, "batch failed")
		}
		es.End()
	}
	if span != nil {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "apply failed")
		}
		span.End()
	}
	if err != nil {
		return err
	}
	if p.m != nil {
		p.m.applied.WithLabelValues(p.Name(), p.version).Add(float64(len(batch)))
		if p.o.Freshness {
			for _, e := range batch {
				p.m.ObserveFreshness(p.Name(), e.OccurredAt)
			}
		}
	}
	return nil
}
