package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteSummary prints a short table of d's results for a person: throughput,
// latency, baseline ratio and each target with MET or MISSED.
func WriteSummary(w io.Writer, d Document) error {
	fmt.Fprintf(w, "suite %s on %d CPUs, %s", d.Suite, d.Machine.CPUs, d.Machine.Go)
	if d.Machine.LoadAverage != nil {
		fmt.Fprintf(w, ", load %.2f", *d.Machine.LoadAverage)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tCOUNT\tERRORS\tSECONDS\tPER SECOND\tP50 ms\tP99 ms\tBASELINE /s\tRATIO\tTARGETS")
	num := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f", *p)
	}
	for _, r := range d.Results {
		base := "-"
		if r.Baseline != nil {
			base = fmt.Sprintf("%.0f", r.Baseline.ThroughputPerS)
		}
		var targets []string
		for _, t := range r.Targets {
			state := "MET"
			if !t.Met {
				state = "MISSED"
			}
			targets = append(targets, fmt.Sprintf("%s %s %g %s", t.Field, t.Op, t.Value, state))
		}
		fmt.Fprintf(tw, "%s\t%d %s\t%d\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t%s\n",
			r.Name, r.Count, r.Unit, r.Errors, r.DurationS, r.ThroughputPerS, num(r.P50Ms), num(r.P99Ms),
			base, num(r.Ratio), strings.Join(targets, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range d.Results {
		if r.Notes != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Name, r.Notes)
		}
	}
	return nil
}
