package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/infra/telemetry"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

const redisStartHint = `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no`

// scrape returns the metric families the handler serves.
func scrape(t *testing.T, m *telemetry.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels include
// labels (a counter, gauge or untyped value; a histogram's count).
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, mt := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range mt.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case mt.Counter != nil:
			return mt.GetCounter().GetValue(), true
		case mt.Gauge != nil:
			return mt.GetGauge().GetValue(), true
		case mt.Histogram != nil:
			return float64(mt.GetHistogram().GetSampleCount()), true
		case mt.Untyped != nil:
			return mt.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func histogramSum(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	for _, mt := range fams[name].GetMetric() {
		ok := true
		for _, l := range mt.GetLabel() {
			if v, want := labels[l.GetName()]; want && v != l.GetValue() {
				ok = false
			}
		}
		if ok && mt.Histogram != nil {
			return mt.GetHistogram().GetSampleSum()
		}
	}
	t.Fatalf("no histogram %s%v", name, labels)
	return 0
}

func programEvent(t *testing.T, id string) events.Envelope {
	t.Helper()
	typ, data, err := events.NewCodec().Encode(events.ProgramCreated{ProgramID: id, Title: "T", Category: "drama", Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	return events.Envelope{Type: typ, Data: data, OccurredAt: time.Now(),
		Metadata: events.Metadata{TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
}

// TestMetricsAfterScriptedScenario drives every kind of metric with real
// components — the PostgreSQL event store behind the decorator, the catalog
// projection run by the projection manager, a pgx pool, Redis — then scrapes the
// handler and checks that every metric is present with the values the scenario
// implies.
func TestMetricsAfterScriptedScenario(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewDB(t)
	m := telemetry.NewMetrics()
	store := telemetry.InstrumentStore(pgstore.New(pool), m, nil)

	// Appends: five that work, one stale expected version.
	const programs = 5
	for i := range programs {
		id := fmt.Sprintf("0190d5a0-0000-7000-8000-%012d", i+1)
		if _, err := store.Append(ctx, events.ProgramStreamID(id), events.ExpectNoStream, []events.Envelope{programEvent(t, id)}); err != nil {
			t.Fatal(err)
		}
	}
	id := "0190d5a0-0000-7000-8000-000000000001"
	if _, err := store.Append(ctx, events.ProgramStreamID(id), events.ExpectNoStream, []events.Envelope{programEvent(t, id)}); !errors.Is(err, events.ErrVersionConflict) {
		t.Fatalf("stale append: %v", err)
	}

	// The catalog, run by the projection manager with instrumented projections.
	def, err := rebuild.Rebuildable(pool, catalog.New(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	counter := sqlCounter{pool}
	mgr, err := rebuild.New(pool, store, []rebuild.Definition{def}, rebuild.Options{
		Runtime: runtime.Options{BatchWait: 5 * time.Millisecond},
		Poll:    50 * time.Millisecond, Counter: counter, Logger: slog.New(slog.DiscardHandler),
		Wrap: func(p runtime.Projection, replay bool) runtime.Projection {
			return telemetry.InstrumentProjection(p, m, telemetry.ProjectionOptions{Freshness: !replay})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterProjections(mgr.Status); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterPool("primary", pool); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterRelayLag(func(context.Context) (int64, error) { return 7, nil }); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Run(mctx) }()
	t.Cleanup(func() { cancel(); <-done })
	head, err := store.HeadPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pos int64
		err := pool.QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = 'catalog' AND serving`).Scan(&pos)
		if err == nil && pos >= head {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("catalog did not catch up with %d", head)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// HTTP, cache, breaker and Redis.
	m.ObserveHTTP("GET", "/v1/programs/:id", 200, 3*time.Millisecond)
	m.ObserveHTTP("GET", "/v1/programs/:id", 200, 5*time.Millisecond)
	m.ObserveHTTP("GET", "/v1/programs/:id", 404, time.Millisecond)
	m.CacheRequest(telemetry.CacheLayerMemory, telemetry.CacheResultHit)
	m.CacheRequest(telemetry.CacheLayerMemory, telemetry.CacheResultHit)
	m.CacheRequest(telemetry.CacheLayerRedis, telemetry.CacheResultMiss)
	m.SetBreakerState("redis", telemetry.BreakerOpen)
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { _ = rc.Close() })
	if err := rc.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis at 127.0.0.1:6379 is not reachable (%v); start it with:\n  %s", err, redisStartHint)
	}
	rc.AddHook(m.RedisHook())
	if err := rc.Get(ctx, "mediamesh:test:telemetry:missing:"+t.Name()).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("get missing key: %v", err)
	}
	if err := rc.Do(ctx, "NOSUCHCOMMAND").Err(); err == nil {
		t.Fatal("an unknown command succeeded")
	}

	fams := scrape(t, m)
	checks := []struct {
		name   string
		labels map[string]string
		ok     func(float64) bool
		want   string
	}{
		{"mediamesh_http_requests_total", map[string]string{"method": "GET", "route": "/v1/programs/:id", "status": "200"}, eq(2), "2"},
		{"mediamesh_http_requests_total", map[string]string{"status": "404"}, eq(1), "1"},
		{"mediamesh_http_request_duration_seconds", map[string]string{"status": "200"}, eq(2), "2 observations"},
		{"mediamesh_cache_requests_total", map[string]string{"layer": "memory", "result": "hit"}, eq(2), "2"},
		{"mediamesh_cache_requests_total", map[string]string{"layer": "redis", "result": "miss"}, eq(1), "1"},
		{"mediamesh_eventstore_append_duration_seconds", map[string]string{"result": "ok"}, eq(programs), "5 observations"},
		{"mediamesh_eventstore_append_duration_seconds", map[string]string{"result": "conflict"}, eq(1), "1 observation"},
		{"mediamesh_projection_position", map[string]string{"projection": "catalog", "version": "1"}, eq(float64(head)), "the head"},
		{"mediamesh_projection_lag_events", map[string]string{"projection": "catalog", "version": "1"}, eq(0), "0"},
		{"mediamesh_projection_lag_seconds", map[string]string{"projection": "catalog", "version": "1"}, eq(0), "0"},
		{"mediamesh_projection_serving", map[string]string{"projection": "catalog", "version": "1"}, eq(1), "1"},
		{"mediamesh_projection_dead_letters", map[string]string{"projection": "catalog"}, eq(0), "0"},
		{"mediamesh_projection_events_applied_total", map[string]string{"projection": "catalog", "version": "1"}, eq(programs), "5"},
		{"mediamesh_freshness_seconds", map[string]string{"sink": "catalog"}, eq(programs), "5 observations"},
		{"mediamesh_relay_lag_events", nil, eq(7), "7"},
		{"mediamesh_db_pool_total_conns", map[string]string{"pool": "primary"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"mediamesh_db_pool_acquires_total", map[string]string{"pool": "primary"}, func(v float64) bool { return v >= 10 }, ">= 10"},
		{"mediamesh_redis_errors_total", map[string]string{"kind": "command"}, eq(1), "1 (redis.Nil is not an error)"},
		{"mediamesh_circuit_breaker_state", map[string]string{"name": "redis"}, eq(telemetry.BreakerOpen), "2"},
		{"go_goroutines", nil, func(v float64) bool { return v > 0 }, "> 0"},
	}
	for _, c := range checks {
		v, ok := value(t, fams, c.name, c.labels)
		if !ok {
			t.Errorf("%s%v missing", c.name, c.labels)
			continue
		}
		if !c.ok(v) {
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.want)
		}
	}
	// Freshness is from the append to the projection: well under the test's time.
	if sum := histogramSum(t, fams, "mediamesh_freshness_seconds", map[string]string{"sink": "catalog"}); sum <= 0 || sum > 20*programs {
		t.Errorf("freshness sum %v s over %d events", sum, programs)
	}
	if _, ok := fams["mediamesh_telemetry_collect_errors_total"]; ok {
		t.Errorf("collect errors: %v", fams["mediamesh_telemetry_collect_errors_total"])
	}
}

// sqlCounter counts events of the PostgreSQL event store (as infra/opscli's
// EventCounter does).
type sqlCounter struct{ pool *pgxpool.Pool }

func (c sqlCounter) CountRange(ctx context.Context, after, upTo int64) (int64, error) {
	var n int64
	err := c.pool.QueryRow(ctx, `SELECT count(*) FROM eventstore_events WHERE position > $1 AND position <= $2`, after, upTo).Scan(&n)
	return n, err
}

func eq(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

// TestCollectFailureLeavesMetricOut: a scrape-time read that fails is counted and
// its metric is absent (not a misleading zero).
func TestCollectFailureLeavesMetricOut(t *testing.T) {
	t.Parallel()
	m := telemetry.NewMetrics()
	if err := m.RegisterRelayLag(func(context.Context) (int64, error) { return 0, errors.New("database down") }); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, m)
	if _, ok := fams["mediamesh_relay_lag_events"]; ok {
		t.Error("relay lag reported although its read failed")
	}
	// The error counter is gathered concurrently with the failing read: the next
	// scrape shows it.
	if v, _ := value(t, scrape(t, m), "mediamesh_telemetry_collect_errors_total", map[string]string{"collector": "relay_lag"}); v < 1 {
		t.Errorf("collect errors = %v, want at least 1", v)
	}
}

// TestKafkaConsumerLag commits offsets for a consumer group on an in-process
// Kafka-protocol broker and reads the lag per partition.
func TestKafkaConsumerLag(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Start(t, 1)
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	client, err := sarama.NewClient(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	const topic = "content.events"
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	prod, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		p := int32(0)
		if i >= 5 {
			p = 1
		}
		if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: p, Value: sarama.StringEncoder("x")}); err != nil {
			t.Fatal(err)
		}
	}
	// A group that has committed nothing yet lags by everything retained.
	m0 := telemetry.NewMetrics()
	if err := m0.RegisterConsumerLag(telemetry.KafkaConsumerLag(client, admin, topic, "catalog.v1")); err != nil {
		t.Fatal(err)
	}
	if v, ok := value(t, scrape(t, m0), "mediamesh_consumer_lag", map[string]string{"group": "catalog.v1", "partition": "0"}); !ok || v != 5 {
		t.Errorf("lag of a group without commits = %v (present %v), want 5", v, ok)
	}
	// The group consumed offsets 0..2 of partition 0 (a simple commit, as a
	// consumer group member's).
	coord, err := client.Coordinator("catalog.v1")
	if err != nil {
		t.Fatal(err)
	}
	req := sarama.NewOffsetCommitRequest(cfg, "catalog.v1")
	req.AddBlock(topic, 0, 3, 0, "")
	resp, err := coord.CommitOffset(req)
	if err != nil {
		t.Fatal(err)
	}
	if kerr := resp.Errors[topic][0]; kerr != sarama.ErrNoError {
		t.Fatalf("commit: %v", kerr)
	}

	m := telemetry.NewMetrics()
	if err := m.RegisterConsumerLag(telemetry.KafkaConsumerLag(client, admin, topic, "catalog.v1")); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, m)
	for p, want := range map[string]float64{"0": 2, "1": 2} {
		v, ok := value(t, fams, "mediamesh_consumer_lag", map[string]string{"group": "catalog.v1", "topic": topic, "partition": p})
		if !ok || v != want {
			t.Errorf("lag of partition %s = %v (present %v), want %v", p, v, ok, want)
		}
	}
	if err := telemetry.KafkaCheck(client, topic).Check(context.Background()); err != nil {
		t.Errorf("kafka readiness: %v", err)
	}
	if err := telemetry.KafkaCheck(client, "no.such.topic").Check(context.Background()); err == nil {
		t.Error("kafka readiness of an unknown topic passed")
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		attr slog.Attr
		want string // "" means unchanged
	}{
		{slog.String("authorization", "Bearer abc.def"), telemetry.Redacted},
		{slog.String("Authorization", "x"), telemetry.Redacted},
		{slog.String("password", "hunter2"), telemetry.Redacted},
		{slog.String("refresh_token", "r"), telemetry.Redacted},
		{slog.String("X-Consistency-Token", "t"), telemetry.Redacted},
		{slog.String("db_password", "p"), telemetry.Redacted},
		{slog.String("meili_api_key", "k"), telemetry.Redacted},
		{slog.Int("token", 5), telemetry.Redacted},
		{slog.String("header", "Bearer eyJhbGciOi"), "Bearer " + telemetry.Redacted},
		{slog.String("error", "dial postgres://app:s3cret@db:5432/mm failed"), "dial postgres://app:REDACTED@db:5432/mm failed"},
		{slog.String("url", "redis://127.0.0.1:6379/0"), ""},
		{slog.String("route", "/v1/auth/refresh"), ""},
		{slog.String("token_type", "Bearer"), ""},
		{slog.String("request_id", "abc"), ""},
	}
	for _, tt := range tests {
		got := telemetry.Redact(nil, tt.attr)
		want := tt.want
		if want == "" {
			want = tt.attr.Value.String()
		}
		if got.Value.String() != want {
			t.Errorf("Redact(%s=%v) = %q, want %q", tt.attr.Key, tt.attr.Value, got.Value.String(), want)
		}
	}
}

// TestLoggerRedactsAndCarriesTraceIDs logs through NewLogger, grouped attributes
// included, and checks the JSON line.
func TestLoggerRedactsAndCarriesTraceIDs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, slog.LevelInfo)
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	log.With("service", "mm").WithGroup("req").InfoContext(ctx, "login", "password", "hunter2", "user", "alice",
		slog.Group("headers", "authorization", "Bearer xyz"))
	span.End()
	line := buf.String()
	if strings.Contains(line, "hunter2") || strings.Contains(line, "xyz") {
		t.Fatalf("secret logged: %s", line)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["trace_id"] != span.SpanContext().TraceID().String() || rec["span_id"] == nil {
		t.Errorf("trace ids missing at the top level: %s", line)
	}
	if req, _ := rec["req"].(map[string]any); req["user"] != "alice" {
		t.Errorf("ordinary attribute lost: %s", line)
	}
}

// TestProjectionSpansContinueTheCommandTrace applies a batch through an
// instrumented projection: the event's own trace gets a child span, and the batch
// span links to it.
func TestProjectionSpansContinueTheCommandTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	m := telemetry.NewMetrics()
	p := telemetry.InstrumentProjection(nopProjection{}, m, telemetry.ProjectionOptions{Tracer: tp.Tracer("t"), Freshness: true})
	const tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	batch := []events.Envelope{
		{EventID: "e1", Type: "mediamesh.program.created.v1", Position: 1, OccurredAt: time.Now(), Metadata: events.Metadata{TraceParent: tp1}},
		{EventID: "e2", Type: "mediamesh.program.updated.v1", Position: 2, OccurredAt: time.Now()},
	}
	if err := p.Apply(context.Background(), nil, batch); err != nil {
		t.Fatal(err)
	}
	var batchSpan, eventSpan sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "projection.apply nop":
			batchSpan = s
		case "project mediamesh.program.created.v1":
			eventSpan = s
		}
	}
	if batchSpan == nil || eventSpan == nil {
		t.Fatalf("spans: %d ended, batch %v, event %v", len(rec.Ended()), batchSpan != nil, eventSpan != nil)
	}
	if got := eventSpan.Parent().SpanID().String(); got != "00f067aa0ba902b7" || eventSpan.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("event span's parent %s in trace %s, want the command's span", got, eventSpan.SpanContext().TraceID())
	}
	if len(batchSpan.Links()) != 1 || batchSpan.Links()[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("batch span links: %v", batchSpan.Links())
	}
	if v, _ := value(t, scrape(t, m), "mediamesh_freshness_seconds", map[string]string{"sink": "nop"}); v != 2 {
		t.Errorf("freshness observations = %v, want 2", v)
	}
}

type nopProjection struct{}

func (nopProjection) Name() string    { return "nop" }
func (nopProjection) Version() int    { return 1 }
func (nopProjection) Sinks() []string { return nil }
func (nopProjection) Apply(ctx context.Context, _ pgx.Tx, _ []events.Envelope) error {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return errors.New("apply got no span")
	}
	return nil
}

func TestTracingIsOffByDefaultAndExportsOverOTLPWhenConfigured(t *testing.T) {
	t.Parallel()
	var exported atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" && r.Header.Get("Content-Type") == "application/x-protobuf" {
			exported.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	tr, err := telemetry.NewTracing(context.Background(), "mediamesh", "test", getenv)
	if err != nil || tr.Enabled {
		t.Fatalf("default tracing: enabled %v, %v", tr.Enabled, err)
	}
	_, span := tr.Tracer().Start(context.Background(), "x")
	if span.IsRecording() {
		t.Error("the default provider records spans")
	}
	env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.URL
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc"
	if _, err := telemetry.NewTracing(context.Background(), "mediamesh", "test", getenv); err == nil {
		t.Error("grpc protocol accepted")
	}
	env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
	tr, err = telemetry.NewTracing(context.Background(), "mediamesh", "test", getenv)
	if err != nil || !tr.Enabled {
		t.Fatalf("configured tracing: enabled %v, %v", tr.Enabled, err)
	}
	ctx, span := tr.Tracer().Start(context.Background(), "x")
	if !span.IsRecording() {
		t.Error("the configured provider does not record")
	}
	if tp, _ := telemetry.TraceParentOf(ctx); tp == "" {
		t.Error("no traceparent for a recording span")
	}
	span.End()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tr.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if exported.Load() == 0 {
		t.Error("no span was exported to the OTLP endpoint")
	}
	env["OTEL_SDK_DISABLED"] = "true"
	if tr, _ := telemetry.NewTracing(context.Background(), "mediamesh", "test", getenv); tr.Enabled {
		t.Error("OTEL_SDK_DISABLED ignored")
	}
}
