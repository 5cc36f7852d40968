package runtime_test

import (
	"context"
	"testing"

	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// BenchmarkCatchUp measures how fast both projections catch up on a generated
// history from an in-memory source (the database is the cost), in events/s.
func BenchmarkCatchUp(b *testing.B) {
	hist := pt.Generate(81, 1000)
	src := pt.NewSource(hist...)
	head := hist[len(hist)-1].Position
	for b.Loop() {
		b.StopTimer()
		pool := newDB(b)
		w := startWaiter(b, pool)
		r, err := runtime.New(pool, src, both(), runtime.Options{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		stop := started(b, r)
		waitAll(b, w, head, catalog.Name, editorial.Name)
		b.StopTimer()
		stop()
		if _, err := r.Status(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(len(hist))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
