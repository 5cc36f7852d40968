package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mediamesh/mediamesh/api"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/telemetry"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/relay"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// TestTraceThroughKafka follows one trace from a command request to the
// projection that applies its event, in the Kafka mode: the request's traceparent
// is stored in the event's metadata, the relay sends it as the traceparent header
// of the content.events message, and the catalog projection, consuming the
// message in its consumer group, applies the event in a span whose parent is the
// request's span.
func TestTraceThroughKafka(t *testing.T) {
	t.Parallel()
	s := newSystem(t, true)
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	incoming := "00-" + traceID + "-" + spanID + "-01"

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	stream, err := kafka.NewSource(kafka.Config{Brokers: s.brokers}, kafka.SourceOptions{Logger: quiet, BatchWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p := telemetry.InstrumentProjection(catalog.New(nil), telemetry.NewMetrics(), telemetry.ProjectionOptions{Tracer: tp.Tracer("e2e"), Freshness: true})
	rt, err := runtime.New(s.pool, pgstore.New(s.pool), []runtime.Projection{p}, runtime.Options{Stream: stream, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	background(t, "projection", rt.Run)

	tok, err := s.signer.Mint("editor-1", api.RoleEditor, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/programs", strings.NewReader(`{"title":"Traced","category":"news","language":"en"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", incoming)
	res, err := s.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/programs: %d %s", res.StatusCode, body)
	}
	var created struct{ ID string }
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}

	// The relayed message carries the trace in its headers.
	header := relayedTraceParent(t, s.brokers, created.ID)
	if !strings.HasPrefix(header, "00-"+traceID+"-") {
		t.Errorf("content.events message of program %s: traceparent header %q, want trace %s", created.ID, header, traceID)
	}

	// The projection's span for the event continues the request's trace.
	eventually(t, visibleWithin, "the projection's event span", func() error {
		for _, sp := range rec.Ended() {
			if sp.Name() != "project mediamesh.program.created.v1" || sp.SpanContext().TraceID().String() != traceID {
				continue
			}
			if got := sp.Parent().SpanID().String(); got != spanID {
				return fmt.Errorf("event span's parent %s, want the request's span %s", got, spanID)
			}
			return nil
		}
		return fmt.Errorf("no event span in trace %s among %d spans", traceID, len(rec.Ended()))
	})
}

// relayedTraceParent reads content.events from the start until it finds the
// message keyed by programID, and returns its traceparent header.
func relayedTraceParent(t *testing.T, brokers []string, programID string) string {
	t.Helper()
	sc, err := kafka.NewSaramaConfig(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := sarama.NewConsumer(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	parts, err := consumer.Partitions(kafka.TopicContentEvents)
	if err != nil {
		t.Fatal(err)
	}
	found := make(chan string, len(parts))
	ctx, cancel := context.WithTimeout(context.Background(), visibleWithin)
	defer cancel()
	for _, part := range parts {
		pc, err := consumer.ConsumePartition(kafka.TopicContentEvents, part, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			for {
				select {
				case msg, ok := <-pc.Messages():
					if !ok {
						return
					}
					if string(msg.Key) != programID {
						continue
					}
					for _, h := range msg.Headers {
						if string(h.Key) == relay.MetaTraceParent {
							found <- string(h.Value)
							return
						}
					}
					found <- ""
					return
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	select {
	case h := <-found:
		return h
	case <-ctx.Done():
		t.Fatalf("no content.events message keyed by program %s within %s", programID, visibleWithin)
		return ""
	}
}
