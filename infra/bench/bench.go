// Package bench writes `mediamesh bench` results: the JSON document of
// ../shared/bench.schema.json (embedded here, and every document is validated against
// it before it is written), latency percentiles, baselines with their ratio, targets
// with whether they were met, a human summary, and a bounded closed-loop load driver
// (Run) that every suite can reuse.
//
// A suite builds one Result per measurement with Measure, adds a Baseline and
// Targets, collects the Results in a Document, and calls WriteFile and WriteSummary.
package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Document is one run of one suite.
type Document struct {
	Suite     string    `json:"suite"`
	StartedAt time.Time `json:"started_at"`
	Machine   Machine   `json:"machine"`
	Results   []Result  `json:"results"`
}

// Machine is what a reader needs to compare runs: cores, Go version, load.
type Machine struct {
	CPUs int    `json:"cpus"`
	Go   string `json:"go"`
	// LoadAverage is the 1-minute load average when the run started (Linux only).
	LoadAverage *float64 `json:"load_average,omitempty"`
}

// NewDocument starts a document for suite, reading the machine's description now.
func NewDocument(suite string) Document {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if la, ok := loadAverage(); ok {
		m.LoadAverage = &la
	}
	return Document{Suite: suite, StartedAt: time.Now().UTC().Truncate(time.Millisecond), Machine: m}
}

func loadAverage() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}

// Result is one measurement. Optional fields are pointers so that "not measured"
// is absent from the JSON rather than a misleading zero.
type Result struct {
	Name           string    `json:"name"`
	Unit           string    `json:"unit"`
	Count          int64     `json:"count"`
	Errors         int64     `json:"errors"`
	DurationS      float64   `json:"duration_s"`
	ThroughputPerS float64   `json:"throughput_per_s"`
	P50Ms          *float64  `json:"p50_ms,omitempty"`
	P95Ms          *float64  `json:"p95_ms,omitempty"`
	P99Ms          *float64  `json:"p99_ms,omitempty"`
	P999Ms         *float64  `json:"p999_ms,omitempty"`
	HitRate        *float64  `json:"hit_rate,omitempty"`
	Baseline       *Baseline `json:"baseline,omitempty"`
	Ratio          *float64  `json:"ratio,omitempty"`
	Targets        []Target  `json:"targets,omitempty"`
	Notes          string    `json:"notes,omitempty"`
}

// Baseline is the reference measured in the same run on the same machine.
type Baseline struct {
	Name           string   `json:"name"`
	ThroughputPerS float64  `json:"throughput_per_s"`
	P99Ms          *float64 `json:"p99_ms,omitempty"`
	DurationS      *float64 `json:"duration_s,omitempty"`
}

// Target is a goal from the issue and whether this run met it.
type Target struct {
	Field string  `json:"field"`
	Op    string  `json:"op"`
	Value float64 `json:"value"`
	Met   bool    `json:"met"`
}

// Target comparison operators.
const (
	AtLeast = ">="
	AtMost  = "<="
)

// Measure builds a Result from a run's Stats: count and throughput in units,
// latency percentiles of the operations (when there were any), errors, and the
// first error's text as a note.
func Measure(name, unit string, s Stats) Result {
	r := Result{Name: name, Unit: unit, Count: s.Units, Errors: s.Errors, DurationS: round(s.Elapsed.Seconds(), 3)}
	if s.Elapsed > 0 {
		r.ThroughputPerS = round(float64(s.Units)/s.Elapsed.Seconds(), 1)
	}
	if len(s.Latencies) > 0 {
		p := Percentiles(s.Latencies)
		r.P50Ms, r.P95Ms, r.P99Ms, r.P999Ms = ms(p.P50), ms(p.P95), ms(p.P99), ms(p.P999)
	}
	if s.FirstError != nil {
		r.Notes = "first error: " + s.FirstError.Error()
	}
	return r
}

// AddNote appends a sentence to the result's notes (after the first error's text,
// when there was one).
func (r *Result) AddNote(note string) {
	if r.Notes != "" {
		r.Notes += "; "
	}
	r.Notes += note
}

// BaselineOf turns another measurement into a Baseline.
func BaselineOf(r Result) Baseline {
	d := r.DurationS
	return Baseline{Name: r.Name, ThroughputPerS: r.ThroughputPerS, P99Ms: r.P99Ms, DurationS: &d}
}

// SetBaseline records b and the ratio of this result's throughput to it.
func (r *Result) SetBaseline(b Baseline) {
	r.Baseline = &b
	if b.ThroughputPerS > 0 {
		v := round(r.ThroughputPerS/b.ThroughputPerS, 3)
		r.Ratio = &v
	}
}

// AddTarget records a goal on one of the result's fields (throughput_per_s,
// p50_ms, p95_ms, p99_ms, p999_ms, ratio, hit_rate, duration_s, errors) and
// whether it was met. A goal on a field that was not measured is not met.
func (r *Result) AddTarget(field, op string, value float64) {
	v, ok := r.field(field)
	met := ok && ((op == AtLeast && v >= value) || (op == AtMost && v <= value))
	r.Targets = append(r.Targets, Target{Field: field, Op: op, Value: value, Met: met})
}

func (r *Result) field(name string) (float64, bool) {
	opt := func(p *float64) (float64, bool) {
		if p == nil {
			return 0, false
		}
		return *p, true
	}
	switch name {
	case "throughput_per_s":
		return r.ThroughputPerS, true
	case "duration_s":
		return r.DurationS, true
	case "errors":
		return float64(r.Errors), true
	case "p50_ms":
		return opt(r.P50Ms)
	case "p95_ms":
		return opt(r.P95Ms)
	case "p99_ms":
		return opt(r.P99Ms)
	case "p999_ms":
		return opt(r.P999Ms)
	case "ratio":
		return opt(r.Ratio)
	case "hit_rate":
		return opt(r.HitRate)
	}
	return 0, false
}

// TargetsMet reports whether every target of every result was met.
func (d Document) TargetsMet() bool {
	for _, r := range d.Results {
		for _, t := range r.Targets {
			if !t.Met {
				return false
			}
		}
	}
	return true
}

// Marshal returns the document as indented JSON, after checking it against the
// schema.
func (d Document) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep ">=" readable in targets
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encode bench document: %w", err)
	}
	if err := Validate(buf.Bytes()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFile writes the validated document to path.
func (d Document) WriteFile(path string) error {
	b, err := d.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write bench document: %w", err)
	}
	return nil
}

func ms(d time.Duration) *float64 {
	v := round(float64(d)/float64(time.Millisecond), 3)
	return &v
}

func round(v float64, places int) float64 {
	p := math.Pow10(places)
	return math.Round(v*p) / p
}
