package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/command/ingest"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// TestIngestFile: `mediamesh ingest FILE` applies a 20-program feed with its own
// worker, reports a completed job, and every program reaches the event store.
func TestIngestFile(t *testing.T) {
	t.Parallel()
	pool, dbURL := pgtest.NewDB(t)
	path := filepath.Join(t.TempDir(), "feed.ndjson")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ingest.DemoFeed(f, 20, 7); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	te := newTestEnv(serverVars(t, dbURL))
	if code := runCmd(t, te, "ingest", path); code != 0 {
		t.Fatalf("ingest: exit %d\nstdout: %s\nstderr: %s", code, te.stdout, te.stderr)
	}
	if out := te.stdout.String(); !strings.Contains(out, "completed: 20 items, 20 succeeded, 0 failed") {
		t.Errorf("ingest output %q does not report a completed job of 20 items", out)
	}
	var jobs, succeeded int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM ingest_jobs`).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 1 {
		t.Errorf("%d ingest jobs, want 1", jobs)
	}
	if err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM eventstore_events WHERE type = 'mediamesh.program.created.v1'`).Scan(&succeeded); err != nil {
		t.Fatal(err)
	}
	if succeeded != 20 {
		t.Errorf("%d programs created in the event store, want 20", succeeded)
	}
}

// TestIngestUsage: a missing file is a usage error, an unreadable one a failure.
func TestIngestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"no file", []string{"ingest"}, 2},
		{"two files", []string{"ingest", "a.ndjson", "b.ndjson"}, 2},
		{"bad flag", []string{"ingest", "--nope", "a.ndjson"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			te := newTestEnv(nil)
			if code := runCmd(t, te, tt.args...); code != tt.code {
				t.Errorf("exit %d, want %d: %s", code, tt.code, te.stderr)
			}
		})
	}
}

// TestWithPoolConns: the pool is enlarged for an ingest worker unless the URL sets
// pool_max_conns itself.
func TestWithPoolConns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"url", "postgres://u@h:5432/db?sslmode=disable", "postgres://u@h:5432/db?pool_max_conns=32&sslmode=disable"},
		{"url without query", "postgresql://u@h/db", "postgresql://u@h/db?pool_max_conns=32"},
		{"keywords", "host=h dbname=db", "host=h dbname=db pool_max_conns=32"},
		{"explicit smaller", "postgres://u@h/db?pool_max_conns=5", "postgres://u@h/db?pool_max_conns=5"},
		{"explicit keyword", "host=h pool_max_conns=50", "host=h pool_max_conns=50"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := withPoolConns(tt.in, 32); got != tt.want {
				t.Errorf("withPoolConns(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
