package telemetry_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediamesh/mediamesh/infra/telemetry"
	"github.com/mediamesh/mediamesh/query/cache"
)

// TestCacheLabelsAreTheQuerySides: the composition root hands *telemetry.Metrics
// to query/cache as its cache.Metrics (and the breaker's states to
// SetBreakerState), so the labels and numbers telemetry documents (its constants
// and help text) must be the ones the cache layers emit, and the help text must
// equal cache.NewPrometheus's (the same metric, registered either way).
func TestCacheLabelsAreTheQuerySides(t *testing.T) {
	t.Parallel()
	pairs := [][2]string{
		{telemetry.CacheLayerMemory, cache.LayerMemory},
		{telemetry.CacheLayerRedis, cache.LayerRedis},
		{telemetry.CacheLayerPostgres, cache.LayerPostgres},
		{telemetry.CacheResultHit, cache.ResultHit},
		{telemetry.CacheResultMiss, cache.ResultMiss},
		{telemetry.CacheResultError, cache.ResultError},
	}
	for _, p := range [][2]int{
		{telemetry.BreakerClosed, int(cache.BreakerClosed)},
		{telemetry.BreakerHalfOpen, int(cache.BreakerHalfOpen)},
		{telemetry.BreakerOpen, int(cache.BreakerOpen)},
	} {
		if p[0] != p[1] {
			t.Errorf("breaker state %d in telemetry is %d in query/cache", p[0], p[1])
		}
	}
	for _, p := range pairs {
		if p[0] != p[1] {
			t.Errorf("telemetry says %q where query/cache emits %q", p[0], p[1])
		}
	}
	var _ cache.Metrics = (*telemetry.Metrics)(nil)

	help := func(reg prometheus.Gatherer) string {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "mediamesh_cache_requests_total" {
				return mf.GetHelp()
			}
		}
		t.Fatal("mediamesh_cache_requests_total not gathered")
		return ""
	}
	m := telemetry.NewMetrics()
	m.CacheRequest(cache.LayerMemory, cache.ResultHit)
	reg := prometheus.NewRegistry()
	prom, err := cache.NewPrometheus(reg)
	if err != nil {
		t.Fatal(err)
	}
	prom.CacheRequest(cache.LayerMemory, cache.ResultHit)
	if a, b := help(m.Registry()), help(reg); a != b {
		t.Errorf("help text differs:\n telemetry:   %s\n query/cache: %s", a, b)
	}
}
