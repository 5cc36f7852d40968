package telemetry

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/mediamesh/mediamesh/events"
)

// TracerName is the instrumentation scope of MediaMesh's spans.
const TracerName = "github.com/mediamesh/mediamesh"

// Propagator is the W3C trace-context propagator MediaMesh uses on HTTP requests,
// in event metadata (events.Metadata.TraceParent) and in Kafka headers.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Tracing is a tracer provider and its shutdown.
type Tracing struct {
	// Provider is a real SDK provider exporting over OTLP, or a no-op one.
	Provider trace.TracerProvider
	// Enabled says whether spans are exported.
	Enabled  bool
	shutdown func(context.Context) error
}

// Shutdown flushes the spans not yet exported; call it last, on the way out.
func (t Tracing) Shutdown(ctx context.Context) error {
	if t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Tracer returns MediaMesh's tracer of the provider.
func (t Tracing) Tracer() trace.Tracer { return t.Provider.Tracer(TracerName) }

// NewTracing configures tracing from the standard OpenTelemetry environment
// variables (read through getenv), and is off by default:
//
//   - Without OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
//     with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none, the provider is a
//     no-op: spans cost next to nothing and nothing is sent.
//   - Otherwise spans are batched and exported over OTLP/HTTP (protobuf); the
//     exporter reads the other OTEL_EXPORTER_OTLP_* variables (headers, timeout,
//     TLS) itself, and the SDK reads OTEL_TRACES_SAMPLER (default: parent-based,
//     always on). OTEL_EXPORTER_OTLP_PROTOCOL may only be http/protobuf: this build
//     has no gRPC exporter.
//   - The resource is service.name (service, unless OTEL_SERVICE_NAME or
//     OTEL_RESOURCE_ATTRIBUTES say otherwise) and service.version.
func NewTracing(ctx context.Context, service, version string, getenv func(string) string) (Tracing, error) {
	off := Tracing{Provider: noop.NewTracerProvider()}
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		return off, nil
	}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return off, nil
	}
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if p := getenv(k); p != "" && p != "http/protobuf" {
			return off, fmt.Errorf("tracing: %s=%s: only http/protobuf is supported", k, p)
		}
	}
	// The endpoint is read through getenv (the exporter would read the process
	// environment itself): the signal's own endpoint is used as it is, the generic
	// one gets the traces path, as the OTLP specification says.
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" {
		endpoint = strings.TrimRight(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "/") + "/v1/traces"
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return off, fmt.Errorf("tracing: otlp exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service), attribute.String("service.version", version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return off, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return Tracing{Provider: tp, Enabled: true, shutdown: tp.Shutdown}, nil
}

// mapCarrier is a propagation carrier over two strings.
type mapCarrier map[string]string

func (c mapCarrier) Get(key string) string { return c[key] }
func (c mapCarrier) Set(key, value string) { c[key] = value }
func (c mapCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// ContextFromTraceParent returns ctx carrying the remote span context of a W3C
// traceparent (and tracestate), as stored in events.Metadata and sent as Kafka
// headers; ctx unchanged when traceparent is empty or invalid.
func ContextFromTraceParent(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return Propagator.Extract(ctx, mapCarrier{"traceparent": traceparent, "tracestate": tracestate})
}

// TraceParentOf returns the W3C traceparent and tracestate of ctx's span ("" when
// it has none): what a command stores in its events' metadata.
func TraceParentOf(ctx context.Context) (traceparent, tracestate string) {
	c := mapCarrier{}
	Propagator.Inject(ctx, c)
	return c["traceparent"], c["tracestate"]
}

// EventSpanContext returns the span context an event was recorded under (from its
// metadata), or an invalid one.
func EventSpanContext(e events.Envelope) trace.SpanContext {
	return trace.SpanContextFromContext(ContextFromTraceParent(context.Background(), e.Metadata.TraceParent, e.Metadata.TraceState))
}
