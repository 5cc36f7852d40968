package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// TestBenchIngestTiny runs `mediamesh bench ingest` through the CLI on a feed of
// 300 programs (--max-ops) in a scratch database of its own: progress on standard
// error, an ingest result with its target, and a document valid against the schema.
func TestBenchIngestTiny(t *testing.T) {
	t.Parallel()
	_, dbURL := pgtest.NewDB(t)
	out := filepath.Join(t.TempDir(), "bench-ingest.json")
	scratch := fmt.Sprintf("mediamesh_bench_ingest_%d", time.Now().UnixNano()%1_000_000_000)
	te := newTestEnv(serverVars(t, dbURL))
	if code := runCmd(t, te, "bench", "ingest", "--max-ops", "300", "--database", scratch, "--json", out); code != 0 {
		t.Fatalf("bench ingest: exit %d\nstdout: %s\nstderr: %s", code, te.stdout, te.stderr)
	}
	if !strings.Contains(te.stderr.String(), "visible 300") {
		t.Errorf("stderr shows no progress to the end: %s", te.stderr)
	}
	if !strings.Contains(te.stdout.String(), "throughput_per_s >= 5000") {
		t.Errorf("the summary does not state the target: %s", te.stdout)
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
	if doc.Suite != "ingest" || len(doc.Results) != 1 || doc.Results[0].Name != "ingest" || doc.Results[0].Count != 300 || doc.Results[0].Errors != 0 {
		t.Errorf("document: %+v", doc)
	}
}
