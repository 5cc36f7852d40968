// Package telemetry is MediaMesh's observability: Prometheus metrics on one
// registry per process, OpenTelemetry tracing (OTLP when configured, a no-op
// otherwise), JSON logs that never carry a secret, and the readiness checks of
// /health/ready.
//
// Decisions:
//
//   - One prometheus.Registry, built once by the composition root (NewMetrics) and
//     passed to whatever records or exposes metrics: no package registers on the
//     global default registry, so two servers in one test process never collide and
//     a metric cannot appear from a hidden init().
//   - Metrics that need I/O to read (projection lag, relay lag, Kafka consumer lag)
//     are collected on scrape, each with a timeout and a short cache (see
//     CollectTimeout, CollectEvery), so a slow database delays no scrape by more
//     than that and several scrapers do not multiply the queries. A failed read
//     leaves that metric out of the scrape (and counts in
//     mediamesh_telemetry_collect_errors_total) rather than reporting a zero.
//   - Label values are bounded: HTTP metrics use the route pattern
//     ("/v1/programs/:id"), never the path; unmatched requests share one label.
//   - Freshness (mediamesh_freshness_seconds{sink}) is measured from the time an
//     event was recorded (its occurred_at, set by the command as it appends) to the
//     moment its effect is committed in a sink, for each sink: the end-to-end delay
//     a reader of that sink experiences.
package telemetry

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every MediaMesh metric.
const Namespace = "mediamesh"

// Collection bounds of the metrics read on scrape.
const (
	// CollectTimeout bounds each read made during a scrape.
	CollectTimeout = 2 * time.Second
	// CollectEvery is how long a read's result is reused by later scrapes.
	CollectEvery = time.Second
)

// Cache layers and results of mediamesh_cache_requests_total, as query/cache
// emits them (its LayerMemory, LayerRedis, LayerPostgres and ResultHit, ResultMiss,
// ResultError): one count per layer a lookup consults. postgres is the read model
// behind the caches, counted so that a hit rate has its denominator.
const (
	CacheLayerMemory   = "memory"
	CacheLayerRedis    = "redis"
	CacheLayerPostgres = "postgres"
	CacheResultHit     = "hit"
	CacheResultMiss    = "miss"
	CacheResultError   = "error"
)

// Circuit-breaker states of mediamesh_circuit_breaker_state, as query/cache's
// Breaker numbers them (BreakerClosed, BreakerHalfOpen, BreakerOpen).
const (
	BreakerClosed   = 0
	BreakerHalfOpen = 1
	BreakerOpen     = 2
)

// Metrics is every MediaMesh metric, on one registry. Build it once per process
// with NewMetrics; its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec
	cacheRequests  *prometheus.CounterVec
	appendDuration *prometheus.HistogramVec
	freshness      *prometheus.HistogramVec
	applied        *prometheus.CounterVec
	redisErrors    *prometheus.CounterVec
	breakerState   *prometheus.GaugeVec
	collectErrors  *prometheus.CounterVec
}

// NewMetrics returns the metrics on a new registry that also holds the Go runtime
// and process collectors.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "http_requests_total",
			Help: "HTTP requests by method, route pattern and status code.",
		}, []string{"method", "route", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "http_request_duration_seconds",
			Help:    "HTTP request durations by method, route pattern and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route", "status"}),
		cacheRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "cache_requests_total",
			Help: "Discovery cache lookups by layer (memory, redis, postgres) and result (hit, miss, error).",
		}, []string{"layer", "result"}),
		appendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "eventstore_append_duration_seconds",
			Help:    "Event store appends by result (ok, conflict, error).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"result"}),
		freshness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "freshness_seconds",
			Help:    "Time from an event being recorded to its effect being visible in a sink, by sink.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"sink"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "projection_events_applied_total",
			Help: "Events applied by each projection version (a retried batch counts again).",
		}, []string{"projection", "version"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "redis_errors_total",
			Help: "Failed Redis operations by kind (command, pipeline, dial); a missing key is not an error.",
		}, []string{"kind"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "circuit_breaker_state",
			Help: "Circuit-breaker state by breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"name"}),
		collectErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "telemetry_collect_errors_total",
			Help: "Scrape-time reads that failed or timed out, by collector.",
		}, []string{"collector"}),
	}
	reg.MustRegister(m.httpRequests, m.httpDuration, m.cacheRequests, m.appendDuration, m.freshness, m.applied,
		m.redisErrors, m.breakerState, m.collectErrors)
	return m
}

// Registry returns the registry, for components that register collectors of
// their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format (GET /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: false})
}

// ObserveHTTP records one request: route is the route pattern (or "unmatched").
func (m *Metrics) ObserveHTTP(method, route string, status int, d time.Duration) {
	code := strconv.Itoa(status)
	m.httpRequests.WithLabelValues(method, route, code).Inc()
	m.httpDuration.WithLabelValues(method, route, code).Observe(d.Seconds())
}

// CacheRequest counts one cache lookup; the query side calls it (through an
// interface of its own with this method).
func (m *Metrics) CacheRequest(layer, result string) {
	m.cacheRequests.WithLabelValues(layer, result).Inc()
}

// ObserveFreshness records that an event recorded at recordedAt is visible in
// sink now ("catalog", "editorial", "search", "redis", …).
func (m *Metrics) ObserveFreshness(sink string, recordedAt time.Time) {
	if recordedAt.IsZero() {
		return
	}
	m.freshness.WithLabelValues(sink).Observe(max(time.Since(recordedAt).Seconds(), 0))
}

// RedisError counts a failed Redis operation of kind (see RedisHook).
func (m *Metrics) RedisError(kind string) { m.redisErrors.WithLabelValues(kind).Inc() }

// SetBreakerState records a circuit breaker's state (BreakerClosed, …): the
// query role's Redis breaker reports through cache.BreakerOptions.OnStateChange.
func (m *Metrics) SetBreakerState(name string, state int) {
	m.breakerState.WithLabelValues(name).Set(float64(state))
}

// collected is a scrape-time read with a timeout and a short cache: the shared
// part of the collectors of this package.
type collected[T any] struct {
	name string
	m    *Metrics
	read func(ctx context.Context) (T, error)

	mu   sync.Mutex
	at   time.Time
	last T
	ok   bool
}

// get returns the cached value when it is fresh, otherwise reads it again; ok is
// false when the read failed (the error is counted).
func (c *collected[T]) get() (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok && time.Since(c.at) < CollectEvery {
		return c.last, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), CollectTimeout)
	defer cancel()
	v, err := c.read(ctx)
	if err != nil {
		c.m.collectErrors.WithLabelValues(c.name).Inc()
		c.ok = false
		var zero T
		return zero, false
	}
	c.last, c.at, c.ok = v, time.Now(), true
	return v, true
}

// errNilFunc is returned by the Register functions given nothing to call.
var errNilFunc = errors.New("telemetry: nil function")
