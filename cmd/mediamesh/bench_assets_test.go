package main

import (
	"errors"
	"runtime"
	"testing"
	"time"
)

// TestBenchAssetsLoad: the assets suite runs one worker per CPU unless
// --concurrency is given (then exactly that), and passes the other shared flags on.
// The suite's run itself is tested without the race detector in
// bench_assets_run_test.go (and its function in infra/imaging).
func TestBenchAssetsLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args    []string
		clients int
	}{
		{[]string{"assets"}, runtime.NumCPU()},
		{[]string{"assets", "--concurrency", "16"}, 16},
		{[]string{"--concurrency", "1", "assets"}, 1},
	}
	if _, err := parseBenchArgs(newTestEnv(nil).env, []string{"assets", "extra"}); !errors.Is(err, errUsage) {
		t.Errorf("a second suite name: %v, want errUsage", err)
	}
	for _, tt := range tests {
		te := newTestEnv(nil)
		// The flags may come before and after the suite's name.
		a, err := parseBenchArgs(te.env, append(tt.args, "--duration", "3s", "--warmup", "1s", "--max-ops", "7"))
		if err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if a.suite != "assets" || a.run == nil {
			t.Fatalf("%v: suite %q", tt.args, a.suite)
		}
		l := assetsLoad(te.env, a.opts)
		if l.Concurrency != tt.clients || l.Duration != 3*time.Second || l.Warmup != time.Second || l.MaxOps != 7 || l.Progress == nil || l.Label != "thumbnails" {
			t.Errorf("%v: load %+v, want %d clients", tt.args, l, tt.clients)
		}
	}
}
