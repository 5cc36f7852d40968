package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// TestBenchAuthShort runs the auth suite briefly through the CLI: it is registered,
// works in (and drops) its scratch database, and writes a valid document with its
// three results.
func TestBenchAuthShort(t *testing.T) {
	t.Parallel()
	name := scratchName("mm_test_bench_auth_")
	dropDatabase(t, name)
	out := filepath.Join(t.TempDir(), "bench-auth.json")
	te := newTestEnv(serverVars(t, pgtest.ServerURL()))
	if code := runCmd(t, te, "bench", "auth", "--json", out, "--duration", "300ms", "--warmup", "100ms", "--concurrency", "2", "--database", name); code != 0 {
		t.Fatalf("bench auth: exit %d: %s", code, te.stderr)
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
	got := map[string]bench.Result{}
	for _, r := range doc.Results {
		got[r.Name] = r
	}
	for _, n := range []string{"verify_cached", "verify_uncached"} {
		if r, ok := got[n]; !ok || r.Count == 0 || r.Errors != 0 {
			t.Errorf("result %s: %+v", n, r)
		}
	}
	if r, ok := got["login"]; !ok || r.Errors != 0 || len(r.Targets) == 0 {
		t.Errorf("result login: %+v", r)
	}
	if databaseExists(t, name) {
		t.Errorf("scratch database %s was not dropped", name)
	}
}
