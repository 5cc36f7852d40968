//go:build !race

// The race detector slows the suite's 2,000 × 3,000 renders by an order of
// magnitude (a minute and more for two renders on a busy 2-core machine); the
// option handling is race-tested in bench_assets_test.go.

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/infra/bench"
)

// TestBenchAssetsShort runs the assets suite for one measured render through the
// CLI: it needs no database, runs one worker per CPU, and writes a valid document
// with its thumbnails result.
func TestBenchAssetsShort(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "bench-assets.json")
	te := newTestEnv(map[string]string{})
	if code := runCmd(t, te, "bench", "assets", "--json", out, "--duration", "1s", "--warmup", "0s", "--max-ops", "1"); code != 0 {
		t.Fatalf("bench assets: exit %d: %s", code, te.stderr)
	}
	if want := fmt.Sprintf("thumbnails: %d clients", runtime.NumCPU()); !strings.Contains(te.stderr.String(), want) {
		t.Errorf("stderr lacks %q: %s", want, te.stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := bench.Validate(b); err != nil {
		t.Fatalf("document: %v\n%s", err, b)
	}
	var doc bench.Document
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Results) != 1 || doc.Results[0].Name != "thumbnails" || doc.Results[0].Count != 6 || doc.Results[0].Errors != 0 {
		t.Errorf("results: %+v", doc.Results)
	}
}
