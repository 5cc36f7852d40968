package postgres_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/eventstore/eventstoretest"
	"github.com/mediamesh/mediamesh/infra/eventstore/postgres"
)

// BenchmarkAppend measures append throughput with concurrent writers, each on its
// own streams (exact expected versions, the command side's path), and reports
// events/s. Run: go test -run '^$' -bench Append ./infra/eventstore/postgres/
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct{ size, writers int }{{1, 8}, {1, 32}, {10, 8}, {100, 8}} {
		b.Run(fmt.Sprintf("batch=%d/writers=%d", bc.size, bc.writers), func(b *testing.B) {
			size := bc.size
			store := postgres.New(newPool(b, int32(bc.writers)))
			ctx := context.Background()
			var writer atomic.Int64
			b.SetParallelism(max(1, bc.writers/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := writer.Add(1)
				version := int64(0)
				i := 0
				for pb.Next() {
					stream := fmt.Sprintf("bench-%d-%d", w, i/50) // 50 appends per stream
					if i%50 == 0 {
						version = events.ExpectNoStream
					}
					res, err := store.Append(ctx, stream, version, eventstoretest.NewEvents(b, size, "mediamesh.bench.v1"))
					if err != nil {
						b.Error(err)
						return
					}
					version = res.LastVersion
					i++
				}
			})
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
