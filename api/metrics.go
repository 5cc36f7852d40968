package api

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mediamesh/mediamesh/infra/telemetry"
)

// HTTPMetrics records requests and serves the metrics; telemetry.Metrics
// implements it.
type HTTPMetrics interface {
	ObserveHTTP(method, route string, status int, d time.Duration)
	Handler() http.Handler
}

// routeUnmatched labels requests that matched no route (404, 405), so that
// scanners cannot create a metric series per path they try.
const routeUnmatched = "unmatched"

// useObservability installs, first in the chain, the middleware that times and
// counts every request (Deps.Metrics) and traces it (Deps.Tracer).
func (s *server) useObservability(f *fiber.App) {
	if s.deps.Metrics == nil && s.deps.Tracer == nil {
		return
	}
	var tracer trace.Tracer
	if s.deps.Tracer != nil {
		tracer = s.deps.Tracer.Tracer(telemetry.TracerName)
	}
	// The registered routes, known once New has returned: fiber reports the route
	// of the last handler that ran, which for an unmatched request is a
	// middleware's ("/"), so a route is only used as a label when it is one of ours.
	var (
		once  sync.Once
		known map[string]bool
	)
	isRoute := func(method, pattern string) bool {
		once.Do(func() {
			known = make(map[string]bool, len(s.routes))
			for _, r := range s.routes {
				known[r.method+" "+r.pattern] = true
			}
		})
		return known[method+" "+pattern]
	}
	f.Use(func(c *fiber.Ctx) error {
		return s.observe(c, tracer, isRoute)
	})
}

// registerMetrics serves GET /metrics (Prometheus text format) when Deps.Metrics
// is set. It is not authenticated, like /health/*: scrapers reach it on the
// internal network, and it holds counts, never data.
func (s *server) registerMetrics(f *fiber.App) {
	if s.deps.Metrics == nil {
		return
	}
	s.get(f, "/metrics", adaptor.HTTPHandler(s.deps.Metrics.Handler()))
}

// observe runs the rest of the chain inside a server span whose parent is the
// request's traceparent, and records the request once its status is final (the
// access log renders errors before returning). The span's own trace context
// replaces the request's traceparent header, so that a command stores it in the
// events it appends (events.Metadata) and the projections that apply them
// continue this trace.
func (s *server) observe(c *fiber.Ctx, tracer trace.Tracer, isRoute func(method, pattern string) bool) error {
	start := time.Now()
	// A copy: fiber's method is a view into a buffer it reuses, and the metric
	// keeps its label values.
	method := strings.Clone(c.Method())
	var span trace.Span
	if tracer != nil {
		// Copies: fiber's strings are views into buffers it reuses, and the span
		// context keeps the trace state.
		ctx := telemetry.ContextFromTraceParent(c.UserContext(), strings.Clone(c.Get("traceparent")), strings.Clone(c.Get("tracestate")))
		ctx, span = tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			attribute.String("http.request.method", method),
			attribute.String("url.path", string(c.Request().URI().Path())),
		))
		c.SetUserContext(ctx)
		if tp, ts := telemetry.TraceParentOf(ctx); tp != "" {
			c.Request().Header.Set("traceparent", tp)
			if ts != "" {
				c.Request().Header.Set("tracestate", ts)
			} else {
				c.Request().Header.Del("tracestate")
			}
		}
	}
	err := c.Next()
	status := c.Response().StatusCode()
	route := routeUnmatched
	if r := c.Route(); r != nil && isRoute(method, r.Path) {
		route = r.Path
	}
	if span != nil {
		span.SetName(method + " " + route)
		span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status))
		if id := requestIDOf(c); id != "" {
			span.SetAttributes(attribute.String("mediamesh.request_id", id))
		}
		if status >= 500 {
			span.SetStatus(codes.Error, strconv.Itoa(status))
		}
		span.End()
	}
	if s.deps.Metrics != nil {
		s.deps.Metrics.ObserveHTTP(method, route, status, time.Since(start))
	}
	return err
}
