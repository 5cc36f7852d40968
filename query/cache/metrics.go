package cache

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Layers and results of the cache counters (mediamesh_cache_requests_total{layer,result}).
const (
	LayerMemory   = "memory"
	LayerRedis    = "redis"
	LayerPostgres = "postgres"

	ResultHit   = "hit"
	ResultMiss  = "miss"
	ResultError = "error"
)

// Metrics counts cache lookups per layer and result. Each layer counts its own
// lookups: a memory miss that Redis answers is a memory miss and a Redis hit.
type Metrics interface {
	CacheRequest(layer, result string)
}

// Counters is an in-process Metrics; the bench reads it for its hit rate, and
// Tee sends the same counts to Prometheus.
type Counters struct {
	c [3][3]atomic.Int64
}

func index(layer, result string) (int, int, bool) {
	l, r := -1, -1
	switch layer {
	case LayerMemory:
		l = 0
	case LayerRedis:
		l = 1
	case LayerPostgres:
		l = 2
	}
	switch result {
	case ResultHit:
		r = 0
	case ResultMiss:
		r = 1
	case ResultError:
		r = 2
	}
	return l, r, l >= 0 && r >= 0
}

// CacheRequest implements Metrics.
func (c *Counters) CacheRequest(layer, result string) {
	if l, r, ok := index(layer, result); ok {
		c.c[l][r].Add(1)
	}
}

// Get returns the count of one layer and result.
func (c *Counters) Get(layer, result string) int64 {
	if l, r, ok := index(layer, result); ok {
		return c.c[l][r].Load()
	}
	return 0
}

// Reset sets every count to zero (the bench resets after its warm-up).
func (c *Counters) Reset() {
	for l := range c.c {
		for r := range c.c[l] {
			c.c[l][r].Store(0)
		}
	}
}

// Prometheus counts into a mediamesh_cache_requests_total counter vector; the
// nine label combinations are resolved once, so a count is one atomic add.
type Prometheus struct {
	c [3][3]prometheus.Counter
}

// NewPrometheus registers mediamesh_cache_requests_total{layer,result} with reg.
func NewPrometheus(reg prometheus.Registerer) (*Prometheus, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mediamesh_cache_requests_total",
		Help: "Discovery cache lookups by layer (memory, redis, postgres) and result (hit, miss, error).",
	}, []string{"layer", "result"})
	if err := reg.Register(vec); err != nil {
		return nil, fmt.Errorf("register cache metrics: %w", err)
	}
	p := &Prometheus{}
	for _, layer := range []string{LayerMemory, LayerRedis, LayerPostgres} {
		for _, result := range []string{ResultHit, ResultMiss, ResultError} {
			l, r, _ := index(layer, result)
			p.c[l][r] = vec.WithLabelValues(layer, result)
		}
	}
	return p, nil
}

// CacheRequest implements Metrics.
func (p *Prometheus) CacheRequest(layer, result string) {
	if l, r, ok := index(layer, result); ok {
		p.c[l][r].Inc()
	}
}

// Tee sends every count to each of ms (nil entries are skipped).
func Tee(ms ...Metrics) Metrics {
	out := make(tee, 0, len(ms))
	for _, m := range ms {
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

type tee []Metrics

func (t tee) CacheRequest(layer, result string) {
	for _, m := range t {
		m.CacheRequest(layer, result)
	}
}

type noMetrics struct{}

func (noMetrics) CacheRequest(string, string) {}
