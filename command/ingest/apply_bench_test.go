package ingest_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/command/app"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// singleStreamStore hides AppendMany, so the upsert takes its separate appends
// (what EventStoreDB gets).
type singleStreamStore struct{ app.EventStore }

// BenchmarkUpsertApply measures the apply step alone (UpsertProgramHandler on the
// PostgreSQL store, 2 episodes per new program, 20 items at once, no bus, no job
// bookkeeping): one transaction per item with AppendMany against 1 + 2 + 1 separate
// appends without it. Run with a fixed count, e.g. -benchtime 3000x.
func BenchmarkUpsertApply(b *testing.B) {
	for _, multi := range []bool{true, false} {
		b.Run(fmt.Sprintf("append_many=%v", multi), func(b *testing.B) {
			_, url := pgtest.NewDB(b)
			pcfg, err := pgxpool.ParseConfig(url)
			if err != nil {
				b.Fatal(err)
			}
			pcfg.MaxConns = 40
			pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(pool.Close)
			var store app.EventStore = pgstore.New(pool)
			if !multi {
				store = singleStreamStore{store}
			}
			h := app.NewUpsertProgramHandler(store)
			items := catalog(b.N, 2)
			job := uuid.Must(uuid.NewV7()).String()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= len(items) {
							return
						}
						p := items[i]
						cmd := app.UpsertProgram{JobID: job, Item: i, ExternalID: p.ExternalID, Title: p.Title, Description: p.Description,
							Category: p.Category, Language: p.Language, Tags: p.Tags, Published: p.Published}
						for _, e := range p.Episodes {
							cmd.Episodes = append(cmd.Episodes, app.UpsertEpisode{ExternalID: e.ExternalID, Title: e.Title, Number: e.Number,
								Season: e.Season, DurationSeconds: e.DurationSeconds, Published: e.Published})
						}
						if _, err := h.Handle(context.Background(), cmd); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
		})
	}
}
