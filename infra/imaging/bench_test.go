//go:build !race

// The race detector slows the 2000 × 3000 renders of this suite by an order of
// magnitude; the function is race-tested through Render in imaging_test.go.

package imaging_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/imaging"
)

// TestBenchThumbnails runs the bench suite's function briefly and checks that its
// result is a valid bench document with the name and unit.
func TestBenchThumbnails(t *testing.T) {
	t.Parallel()
	res, err := imaging.BenchThumbnails(context.Background(), bench.Load{Concurrency: 1, Duration: time.Millisecond, MaxOps: 1}, imaging.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Name != "thumbnails" || res.Unit != "thumbnails" || res.Count != 6 || res.Errors != 0 || res.ThroughputPerS <= 0 ||
		!strings.Contains(res.Notes, "6 thumbnails per 2000×3000 JPEG original") {
		t.Fatalf("result %+v", res)
	}
	doc := bench.NewDocument("assets")
	doc.Results = append(doc.Results, res)
	b, err := doc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := bench.Validate(b); err != nil || !json.Valid(b) {
		t.Fatalf("document does not validate: %v", err)
	}
}
