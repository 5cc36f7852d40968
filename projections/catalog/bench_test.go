package catalog_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/catalog"
	pt "github.com/mediamesh/mediamesh/projections/internal/projectiontest"
)

// BenchmarkApply measures the catalog's apply path alone: a generated history in
// batches of 1,000 events, each batch in its own transaction, in events/s.
func BenchmarkApply(b *testing.B) {
	hist := pt.Generate(5, 1500)
	ctx := context.Background()
	proj := catalog.New(nil)
	for b.Loop() {
		b.StopTimer()
		pool, _ := pgtest.NewDB(b)
		b.StartTimer()
		for evs := hist; len(evs) > 0; {
			n := min(len(evs), 1000)
			if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return proj.Apply(ctx, tx, evs[:n]) }); err != nil {
				b.Fatal(err)
			}
			evs = evs[n:]
		}
	}
	b.ReportMetric(float64(len(hist))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
