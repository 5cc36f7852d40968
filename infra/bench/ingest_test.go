package bench_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/bench"
	bussql "github.com/mediamesh/mediamesh/infra/bus/sql"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// TestIngestSmall runs the ingest suite on a tiny feed (programs with an episode
// each, over two partitions): every item is counted visible, progress is shown,
// and the document validates against the bench schema.
func TestIngestSmall(t *testing.T) {
	t.Parallel()
	_, url := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var progress bytes.Buffer
	res, err := bench.Ingest(ctx, bench.IngestConfig{DatabaseURL: url, Items: 1200, Episodes: 1, Bus: bussql.Config{Partitions: 2}, Concurrency: 4, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 {
		t.Fatalf("results %+v", res)
	}
	r := res[0]
	if r.Name != "ingest" || r.Unit != "items" || r.Count != 1200 || r.Errors != 0 || r.ThroughputPerS <= 0 ||
		r.P50Ms == nil || r.P99Ms == nil || *r.P99Ms < *r.P50Ms || len(r.Targets) != 1 ||
		r.Targets[0].Field != "throughput_per_s" || r.Targets[0].Value != bench.TargetIngestItemsPerS {
		t.Fatalf("result %+v", r)
	}
	if !strings.Contains(r.Notes, "completed") {
		t.Errorf("notes %q: the job did not complete", r.Notes)
	}
	if !strings.Contains(progress.String(), "visible 1200") {
		t.Errorf("progress lacks the end:\n%s", progress.String())
	}
	doc := bench.NewDocument("ingest")
	doc.Results = res
	if _, err := doc.Marshal(); err != nil {
		t.Fatalf("document: %v", err)
	}
}
