package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	seq := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(n-i) * time.Millisecond // reversed: Percentiles must sort
		}
		return d
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Quantiles
	}{
		{"empty", nil, Quantiles{}},
		{"one", []time.Duration{7}, Quantiles{7, 7, 7, 7}},
		{"hundred", seq(100), Quantiles{50 * time.Millisecond, 95 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond}},
		{"thousand", seq(1000), Quantiles{500 * time.Millisecond, 950 * time.Millisecond, 990 * time.Millisecond, 999 * time.Millisecond}},
		{"two", []time.Duration{2, 1}, Quantiles{1, 2, 2, 2}},
	}
	for _, tt := range tests {
		if got := Percentiles(tt.in); got != tt.want {
			t.Errorf("%s: Percentiles = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestTargetsAndBaseline(t *testing.T) {
	t.Parallel()
	r := Measure("store_batched", "events", Stats{Ops: 10, Units: 1000, Elapsed: 2 * time.Second,
		Latencies: []time.Duration{time.Millisecond, 2 * time.Millisecond, 40 * time.Millisecond}})
	r.SetBaseline(Baseline{Name: "insert", ThroughputPerS: 250})
	tests := []struct {
		field string
		op    string
		value float64
		met   bool
	}{
		{"throughput_per_s", AtLeast, 500, true},
		{"throughput_per_s", AtLeast, 501, false},
		{"p99_ms", AtMost, 50, true},
		{"p99_ms", AtMost, 39.9, false},
		{"ratio", AtLeast, 2, true},
		{"ratio", AtMost, 1, false},
		{"hit_rate", AtLeast, 0, false}, // not measured: never met
		{"no_such_field", AtLeast, 0, false},
		{"errors", AtMost, 0, true},
	}
	for _, tt := range tests {
		r.AddTarget(tt.field, tt.op, tt.value)
	}
	for i, tt := range tests {
		if got := r.Targets[i]; got.Met != tt.met {
			t.Errorf("target %s %s %g: met = %v, want %v (result %+v)", tt.field, tt.op, tt.value, got.Met, tt.met, r)
		}
	}
	if r.ThroughputPerS != 500 || r.Ratio == nil || *r.Ratio != 2 || *r.P50Ms != 2 || *r.P99Ms != 40 {
		t.Errorf("result %+v", r)
	}
	if (Document{Results: []Result{r}}).TargetsMet() {
		t.Error("TargetsMet with missed targets")
	}
}

func TestDocumentMatchesSchema(t *testing.T) {
	t.Parallel()
	d := NewDocument("append")
	r := Measure("http_commands", "requests", Stats{Ops: 3, Units: 3, Elapsed: time.Second, Errors: 1,
		FirstError: errors.New("boom"), Latencies: []time.Duration{time.Millisecond}})
	r.SetBaseline(BaselineOf(Measure("insert", "rows", Stats{Units: 10, Elapsed: time.Second})))
	r.AddTarget("throughput_per_s", AtLeast, 2000)
	d.Results = append(d.Results, r, Measure("plain", "events", Stats{}))
	b, err := d.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if d.Machine.CPUs < 1 || d.Machine.Go == "" {
		t.Errorf("machine %+v", d.Machine)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	res := back["results"].([]any)[1].(map[string]any)
	if _, ok := res["p99_ms"]; ok {
		t.Errorf("unmeasured latency is present: %v", res)
	}

	path := t.TempDir() + "/out.json"
	if err := d.WriteFile(path); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if onDisk, _ := os.ReadFile(path); !bytes.Equal(onDisk, b) {
		t.Error("file differs from Marshal")
	}

	var sum bytes.Buffer
	if err := WriteSummary(&sum, d); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"http_commands", "MISSED", "first error: boom"} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}
}

func TestValidateRejects(t *testing.T) {
	t.Parallel()
	valid := `{"suite":"s","started_at":"2026-01-02T03:04:05Z","machine":{"cpus":2,"go":"go1.26"},"results":[{"name":"a","unit":"u","count":1,"duration_s":1,"throughput_per_s":1}]}`
	if err := Validate([]byte(valid)); err != nil {
		t.Fatalf("valid document rejected: %v", err)
	}
	tests := map[string]string{
		"no results":       `{"suite":"s","started_at":"2026-01-02T03:04:05Z","machine":{"cpus":2,"go":"go1.26"},"results":[]}`,
		"negative count":   strings.Replace(valid, `"count":1`, `"count":-1`, 1),
		"bad time":         strings.Replace(valid, `2026-01-02T03:04:05Z`, `yesterday`, 1),
		"missing unit":     strings.Replace(valid, `"unit":"u",`, ``, 1),
		"bad target op":    strings.Replace(valid, `"throughput_per_s":1}`, `"throughput_per_s":1,"targets":[{"field":"x","op":">","value":1,"met":true}]}`, 1),
		"hit rate above 1": strings.Replace(valid, `"throughput_per_s":1}`, `"throughput_per_s":1,"hit_rate":1.5}`, 1),
		"not json":         `{`,
	}
	for name, doc := range tests {
		if err := Validate([]byte(doc)); err == nil {
			t.Errorf("%s: accepted %s", name, doc)
		}
	}
}

// TestSchemaIsShared keeps the embedded copy equal to ../shared/bench.schema.json,
// the contract, wherever the checkout has shared/ beside it (as CI does).
func TestSchemaIsShared(t *testing.T) {
	t.Parallel()
	shared, err := os.ReadFile("../../../shared/bench.schema.json")
	if errors.Is(err, os.ErrNotExist) {
		t.Log("../shared/bench.schema.json not beside this checkout; the embedded copy is used as is")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(shared, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(Schema, &b); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Error("infra/bench/schema.json differs from ../shared/bench.schema.json: copy the shared one over")
	}
}

func TestRunBounds(t *testing.T) {
	t.Parallel()
	t.Run("max ops with warm-up", func(t *testing.T) {
		t.Parallel()
		var calls atomic.Int64
		s := Run(context.Background(), Load{Concurrency: 4, Warmup: 20 * time.Millisecond, Duration: time.Minute, MaxOps: 50},
			func(ctx context.Context, w int) (int, error) {
				calls.Add(1)
				return 10, nil
			})
		if s.Ops != 50 || s.Units != 500 || len(s.Latencies) != 50 {
			t.Errorf("stats %+v", s)
		}
		if calls.Load() <= 50 {
			t.Errorf("warm-up calls were not excluded: %d calls for %d measured ops", calls.Load(), s.Ops)
		}
	})
	t.Run("duration", func(t *testing.T) {
		t.Parallel()
		begin := time.Now()
		s := Run(context.Background(), Load{Concurrency: 2, Duration: 50 * time.Millisecond},
			func(ctx context.Context, w int) (int, error) {
				time.Sleep(time.Millisecond) // the work being measured
				return 1, nil
			})
		if took := time.Since(begin); took > 5*time.Second || s.Ops == 0 || s.Elapsed < 50*time.Millisecond {
			t.Errorf("took %s, stats ops=%d elapsed=%s", took, s.Ops, s.Elapsed)
		}
	})
	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		var n atomic.Int64
		s := Run(context.Background(), Load{Concurrency: 3, Duration: time.Minute, MaxOps: 30},
			func(ctx context.Context, w int) (int, error) {
				if n.Add(1)%3 == 0 {
					return 0, boom
				}
				return 1, nil
			})
		if s.Errors != 10 || s.Ops != 20 || !errors.Is(s.FirstError, boom) {
			t.Errorf("stats ops=%d errors=%d first=%v", s.Ops, s.Errors, s.FirstError)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		var n atomic.Int64
		done := make(chan Stats)
		go func() {
			done <- Run(ctx, Load{Concurrency: 2, Duration: time.Hour}, func(ctx context.Context, w int) (int, error) {
				if n.Add(1) == 100 {
					cancel()
				}
				return 1, nil
			})
		}()
		select {
		case s := <-done:
			if s.Ops < 99 {
				t.Errorf("ops %d", s.Ops)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not stop after its context was cancelled")
		}
	})
	t.Run("progress", func(t *testing.T) {
		t.Parallel()
		var buf syncBuffer
		Run(context.Background(), Load{Concurrency: 1, Duration: 60 * time.Millisecond, Progress: &buf, ProgressEvery: 10 * time.Millisecond, Label: "demo"},
			func(ctx context.Context, w int) (int, error) { time.Sleep(time.Millisecond); return 1, nil })
		if !strings.Contains(buf.String(), "demo:") {
			t.Errorf("no progress lines: %q", buf.String())
		}
	})
}
