package compose_test

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// k6Options is the part of `k6 inspect`'s output these checks read.
type k6Options struct {
	Scenarios map[string]struct {
		Executor string `json:"executor"`
		Exec     string `json:"exec"`
		Rate     int    `json:"rate"`
		TimeUnit string `json:"timeUnit"`
		Duration string `json:"duration"`
		MaxVUs   int    `json:"maxVUs"`
	} `json:"scenarios"`
	Thresholds map[string][]string `json:"thresholds"`
}

// TestK6Scripts parses every scenario with `k6 inspect` and checks the sizing
// guide's numbers: constant-arrival-rate at the scenario's rate for its duration,
// both scaled by SCALE, logins beside it under the auth rate limit, and the
// thresholds p95 < 200 ms, p99 < 500 ms, errors < 0.1%.
func TestK6Scripts(t *testing.T) {
	t.Parallel()
	k6 := lookK6(t)
	tests := []struct {
		script   string
		rate     int
		duration time.Duration
	}{
		{"baseline.js", 1000, 10 * time.Minute},
		{"peak.js", 3000, 30 * time.Minute},
		{"spike.js", 10000, 5 * time.Minute},
		{"endurance.js", 2000, 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			t.Parallel()
			name := tt.script[:len(tt.script)-len(".js")]
			for _, scale := range []struct {
				env    string
				factor float64
			}{{"", 1}, {"SCALE=0.1", 0.1}} {
				args := []string{"inspect"}
				if scale.env != "" {
					args = append(args, "-e", scale.env)
				}
				out := run(t, "k6", k6, append(args, tt.script)...)
				var o k6Options
				if err := json.Unmarshal([]byte(out), &o); err != nil {
					t.Fatalf("k6 inspect %s: %v\n%s", tt.script, err, out)
				}
				main, ok := o.Scenarios[name]
				if !ok {
					t.Fatalf("%s: no scenario %q in %v", tt.script, name, o.Scenarios)
				}
				wantRate := int(float64(tt.rate) * scale.factor)
				wantDur := time.Duration(float64(tt.duration) * scale.factor)
				if d, err := time.ParseDuration(main.Duration); err != nil || main.Executor != "constant-arrival-rate" ||
					main.Rate != wantRate || main.TimeUnit != "1s" || d != wantDur || main.Exec != "traffic" {
					t.Errorf("%s %s: scenario %+v, want constant-arrival-rate %d/s for %s", tt.script, scale.env, main, wantRate, wantDur)
				}
				logins, ok := o.Scenarios["logins"]
				if !ok || logins.Executor != "constant-arrival-rate" || logins.TimeUnit != "1m0s" || logins.Rate >= 100 {
					t.Errorf("%s: logins %+v, want constant-arrival-rate under 100 a minute", tt.script, logins)
				}
				if !slices.Equal(o.Thresholds["http_req_duration{phase:load}"], []string{"p(95)<200", "p(99)<500"}) ||
					!slices.Equal(o.Thresholds["http_req_failed{phase:load}"], []string{"rate<0.001"}) {
					t.Errorf("%s: thresholds %v", tt.script, o.Thresholds)
				}
			}
		})
	}
}

// TestK6ScriptsList: every script in compose/k6 is a scenario checked above (a new
// one must be added to the table).
func TestK6ScriptsList(t *testing.T) {
	t.Parallel()
	got, err := filepath.Glob(filepath.Join("k6", "*.js"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"k6/baseline.js", "k6/endurance.js", "k6/peak.js", "k6/spike.js"}
	if !slices.Equal(got, want) {
		t.Fatalf("scripts %v, want %v", got, want)
	}
}
