package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Load bounds a closed-loop run: Concurrency workers each issue one operation after
// another, first for Warmup (not measured), then until Duration has passed or
// MaxOps operations were started, whichever comes first. A run always stops by
// itself.
type Load struct {
	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
	// MaxOps caps the measured operations; 0 means only Duration bounds the run.
	MaxOps int64
	// Progress, when set, receives a line per ProgressEvery (default 1 s) with the
	// running counts (stderr in the CLI).
	Progress      io.Writer
	ProgressEvery time.Duration
	// Label names the run in progress lines.
	Label string
}

// Op performs one operation for worker (0 ≤ worker < Concurrency) and reports how
// many units it completed (1 for a request, 100 for a batch of 100 events).
type Op func(ctx context.Context, worker int) (units int, err error)

// Stats is what a run measured, warm-up excluded.
type Stats struct {
	// Ops and Units count successful operations and the units they completed.
	Ops, Units int64
	// Errors counts failed operations; FirstError is the first of them.
	Errors     int64
	FirstError error
	// Elapsed runs from the end of the warm-up until the last measured operation
	// finished.
	Elapsed time.Duration
	// Latencies holds one duration per successful measured operation, unsorted.
	Latencies []time.Duration
}

// Run drives op under l and returns what it measured. It returns early, with what
// was measured so far, when ctx ends.
func Run(ctx context.Context, l Load, op Op) Stats {
	if l.Concurrency < 1 {
		l.Concurrency = 1
	}
	start := time.Now()
	measureFrom := start.Add(l.Warmup)
	measureUntil := measureFrom.Add(l.Duration)

	var started, ops, units, errs atomic.Int64
	var firstErr error
	var errOnce sync.Once
	lat := make([][]time.Duration, l.Concurrency)
	lastDone := make([]time.Time, l.Concurrency)

	if l.Progress != nil {
		fmt.Fprintf(l.Progress, "%s: %d clients, %s warm-up, then %s", l.Label, l.Concurrency, l.Warmup, l.Duration)
		if l.MaxOps > 0 {
			fmt.Fprintf(l.Progress, " or %d operations", l.MaxOps)
		}
		fmt.Fprintln(l.Progress)
	}
	stopProgress := progress(l, measureFrom, &ops, &units, &errs)
	defer stopProgress()

	var wg sync.WaitGroup
	for w := range l.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				measured := !t0.Before(measureFrom)
				if measured {
					if !t0.Before(measureUntil) {
						return
					}
					if l.MaxOps > 0 && started.Add(1) > l.MaxOps {
						return
					}
				}
				n, err := op(ctx, w)
				t1 := time.Now()
				if !measured {
					continue
				}
				lastDone[w] = t1
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					errs.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				ops.Add(1)
				units.Add(int64(n))
				lat[w] = append(lat[w], t1.Sub(t0))
			}
		}()
	}
	wg.Wait()

	s := Stats{Ops: ops.Load(), Units: units.Load(), Errors: errs.Load(), FirstError: firstErr}
	end := measureFrom
	for _, t := range lastDone {
		if t.After(end) {
			end = t
		}
	}
	s.Elapsed = end.Sub(measureFrom)
	for _, l := range lat {
		s.Latencies = append(s.Latencies, l...)
	}
	return s
}

// progress prints the running counts until the returned function is called.
func progress(l Load, measureFrom time.Time, ops, units, errs *atomic.Int64) func() {
	if l.Progress == nil {
		return func() {}
	}
	every := l.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if now.Before(measureFrom) {
					fmt.Fprintf(l.Progress, "%s: warming up\n", l.Label)
					continue
				}
				secs := now.Sub(measureFrom).Seconds()
				u := units.Load()
				fmt.Fprintf(l.Progress, "%s: %5.1fs  %d ops  %d units  %.0f units/s  %d errors\n",
					l.Label, secs, ops.Load(), u, float64(u)/max(secs, 1e-9), errs.Load())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// Quantiles are latency percentiles.
type Quantiles struct {
	P50, P95, P99, P999 time.Duration
}

// Percentiles returns the nearest-rank percentiles of d (which it sorts in place).
func Percentiles(d []time.Duration) Quantiles {
	slices.Sort(d)
	return Quantiles{
		P50:  Percentile(d, 0.50),
		P95:  Percentile(d, 0.95),
		P99:  Percentile(d, 0.99),
		P999: Percentile(d, 0.999),
	}
}

// Percentile returns the nearest-rank q-quantile (0 < q ≤ 1) of sorted, or 0 when
// it is empty: the smallest value that at least q of the samples do not exceed.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*q + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}
