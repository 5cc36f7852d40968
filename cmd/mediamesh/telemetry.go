package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/mediamesh/mediamesh/infra/telemetry"
)

// tracingShutdownTimeout bounds the flush of the spans not yet exported on the way
// out, so an unreachable collector never holds a stopping process.
const tracingShutdownTimeout = 5 * time.Second

// observability is a process's metrics registry and tracer provider, built once by
// startServerWith and shared by everything that records or exposes them.
type observability struct {
	metrics *telemetry.Metrics
	tracing telemetry.Tracing
}

// tracer returns MediaMesh's tracer.
func (o *observability) tracer() trace.Tracer { return o.tracing.Tracer() }

// newObservability builds the metrics (one registry per process, never the global
// one) and the tracing of the standard OTEL_* variables read through getenv (nil:
// tracing off). The tracer provider's shutdown, which flushes pending spans, is
// added to d's closers, so it runs after everything that could still record a span
// has stopped (closers run in reverse order).
func newObservability(ctx context.Context, getenv func(string) string, d *deps, log *slog.Logger) (*observability, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	tr, err := telemetry.NewTracing(ctx, "mediamesh", version, getenv)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	o := &observability{metrics: telemetry.NewMetrics(), tracing: tr}
	d.closers = append(d.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
		defer cancel()
		if err := tr.Shutdown(sctx); err != nil {
			log.Warn("flush traces", "error", err.Error())
		}
	})
	if err := o.metrics.RegisterPool("primary", d.pool); err != nil {
		return nil, err
	}
	if d.redis != nil {
		d.redis.AddHook(o.metrics.RedisHook())
	}
	// Every append is timed (and traced under its request's span) from here on:
	// the command handlers and every projection see the instrumented store.
	d.store = telemetry.InstrumentStore(d.store, o.metrics, o.tracer())
	log.Info("observability", "tracing", tr.Enabled, "metrics", "/metrics")
	return o, nil
}
