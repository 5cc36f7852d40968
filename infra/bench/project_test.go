package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// TestProjectSmall runs the projection suite on a small stream and a short,
// slow freshness run: every result is there with sane values, and the document
// validates against the bench schema.
func TestProjectSmall(t *testing.T) {
	t.Parallel()
	_, url := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := bench.Project(ctx, bench.ProjectConfig{DatabaseURL: url, Events: 3000, Rate: 50, Programs: 40, Duration: time.Second, Warmup: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Name != "project" || res[1].Name != "freshness" || res[2].Name != "copy_rows" {
		t.Fatalf("results %+v", res)
	}
	if p := res[0]; p.Count != 3000 || p.ThroughputPerS <= 0 || p.Baseline == nil || p.Ratio == nil || len(p.Targets) != 1 {
		t.Errorf("project %+v", p)
	}
	if f := res[1]; f.Count < 30 || f.P99Ms == nil || *f.P99Ms <= 0 || f.Errors != 0 || len(f.Targets) != 1 {
		t.Errorf("freshness %+v (notes %s)", f, f.Notes)
	}
	doc := bench.NewDocument("project")
	doc.Results = res
	if _, err := doc.Marshal(); err != nil {
		t.Fatalf("document: %v", err)
	}
}
