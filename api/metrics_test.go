package api_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/command/app"
)

func parseMetrics(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sample returns the counter value or histogram count of name with labels.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
next:
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		if m.Histogram != nil {
			return float64(m.GetHistogram().GetSampleCount())
		}
		return m.GetCounter().GetValue()
	}
	return -1
}

// TestMetricsCountRequestsByRouteAndStatus sends a scripted set of requests and
// scrapes GET /metrics: every request is counted under its route pattern (never
// its path) and final status, unknown paths share one label.
func TestMetricsCountRequestsByRouteAndStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	editor := e.token(t, "ed", api.RoleEditor)
	for range 3 {
		e.do(t, req{method: http.MethodGet, path: "/health/live"})
	}
	e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs/" + knownProgram, bearer: editor})
	e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs/0190f1f4-0000-7000-8000-00000000ffff", bearer: editor}).problem(t, http.StatusNotFound)
	e.do(t, req{method: http.MethodGet, path: "/v1/cms/programs/" + knownProgram}).problem(t, http.StatusUnauthorized)
	e.do(t, req{method: http.MethodGet, path: "/no/such/path/1"}).problem(t, http.StatusNotFound)
	e.do(t, req{method: http.MethodGet, path: "/no/such/path/2"}).problem(t, http.StatusNotFound)

	res := e.do(t, req{method: http.MethodGet, path: "/metrics"})
	if res.status != http.StatusOK || !strings.HasPrefix(res.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %q", res.status, res.header.Get("Content-Type"))
	}
	fams := parseMetrics(t, res.body)
	tests := []struct {
		route, status string
		want          float64
	}{
		{"/health/live", "200", 3},
		{"/v1/cms/programs/:id", "200", 1},
		{"/v1/cms/programs/:id", "404", 1},
		{"/v1/cms/programs/:id", "401", 1},
		{"unmatched", "404", 2},
	}
	for _, tt := range tests {
		labels := map[string]string{"method": "GET", "route": tt.route, "status": tt.status}
		if got := sample(fams, "mediamesh_http_requests_total", labels); got != tt.want {
			t.Errorf("requests %v = %v, want %v", labels, got, tt.want)
		}
		if got := sample(fams, "mediamesh_http_request_duration_seconds", labels); got != tt.want {
			t.Errorf("durations %v = %v, want %v", labels, got, tt.want)
		}
	}
	for _, f := range fams["mediamesh_http_requests_total"].GetMetric() {
		for _, l := range f.GetLabel() {
			if l.GetName() == "route" && strings.Contains(l.GetValue(), "such") {
				t.Errorf("a path became a label: %v", l.GetValue())
			}
		}
	}
}

// TestTracingContinuesIntoTheCommandsEvents: a request with a traceparent gets a
// server span in that trace, and the command handler receives the server span's
// own trace context to store in its events.
func TestTracingContinuesIntoTheCommandsEvents(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e := newEnv(t, withDeps(func(d *api.Deps) { d.Tracer = tp }))
	var gotParent string
	e.fakes.publishProgram.fn = func(ctx context.Context, c app.PublishProgram) (app.Result, error) {
		gotParent = c.Meta.TraceParent
		return app.Result{ID: c.ProgramID, StreamID: "program-" + c.ProgramID, Version: 3, Position: 7, Changed: true}, nil
	}
	const incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	res := e.do(t, req{method: http.MethodPost, path: "/v1/programs/" + knownProgram + "/publish",
		bearer: e.token(t, "ed", api.RoleEditor), headers: map[string]string{"traceparent": incoming}})
	if res.status != http.StatusOK {
		t.Fatalf("publish: %d %s", res.status, res.body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.Ended()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the span ends after the response is written
	}
	var server sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "POST /v1/programs/:id/publish" {
			server = s
		}
	}
	if server == nil {
		t.Fatalf("no server span among %d", len(rec.Ended()))
	}
	if server.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || server.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("server span not in the caller's trace: %v parent %v", server.SpanContext(), server.Parent())
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + server.SpanContext().SpanID().String() + "-01"
	if gotParent != want {
		t.Errorf("command traceparent %q, want the server span's %q", gotParent, want)
	}
}
