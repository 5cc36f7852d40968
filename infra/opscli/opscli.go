// Package opscli is the logic of `mediamesh projections status|rebuild|dlq`: the
// status table, `rebuild NAME --wait` with its progress bar, and the dead-letter
// listing and replay. The composition root (cmd/mediamesh) only builds a
// rebuild.Manager and calls Projections; nothing here reads flags from the
// process or exits it. `mediamesh bench replay` is the subpackage replaybench.
package opscli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Admin is what the projections commands call; rebuild.Manager implements it
// (a Manager only answers these: it needs no Run in the CLI's process).
type Admin interface {
	Status(ctx context.Context) ([]rebuild.Status, error)
	StartRebuild(ctx context.Context, name string) (string, error)
	Progress(ctx context.Context, name string) (rebuild.Progress, error)
	DeadLetters(ctx context.Context, name string, limit int) ([]runtime.DeadLetter, error)
	Replay(ctx context.Context, name string) (runtime.ReplayResult, error)
}

// ErrUsage is returned for bad arguments, after the usage was written to stderr:
// the caller exits with code 2.
var ErrUsage = errors.New("usage")

// ErrRebuildFailed is returned by a waited rebuild that failed.
var ErrRebuildFailed = errors.New("rebuild failed")

const usage = `usage: mediamesh projections COMMAND
  status [--json]                 every projection version: position, head, lag, dead letters
  rebuild NAME [--wait]           rebuild NAME blue/green (a running projector does the work);
                                  --wait follows it with a progress bar until it switches
  dlq list [NAME] [--limit N] [--json]
                                  dead letters (of NAME, or of every projection)
  dlq replay NAME                 re-apply NAME's dead letters (after fixing their cause)
`

// Projections runs `mediamesh projections ARGS…` against admin, writing results
// to stdout and usage and progress to stderr.
func Projections(ctx context.Context, stdout, stderr io.Writer, admin Admin, args []string) error {
	bad := func(msg string) error {
		if msg != "" {
			fmt.Fprintln(stderr, "mediamesh projections: "+msg)
		}
		fmt.Fprint(stderr, usage)
		return ErrUsage
	}
	if len(args) == 0 {
		return bad("")
	}
	fs := flag.NewFlagSet("projections "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "JSON output")
	wait := fs.Bool("wait", false, "wait for the rebuild, with a progress bar")
	limit := fs.Int("limit", 100, "most dead letters listed")
	parse := func(rest []string) ([]string, error) {
		// Flags may come before or after the positional arguments.
		var pos []string
		for len(rest) > 0 {
			if err := fs.Parse(rest); err != nil {
				return nil, bad(err.Error())
			}
			rest = fs.Args()
			if len(rest) > 0 {
				pos, rest = append(pos, rest[0]), rest[1:]
			}
		}
		return pos, nil
	}
	switch args[0] {
	case "status":
		pos, err := parse(args[1:])
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return bad("status takes no arguments")
		}
		sts, err := admin.Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(stdout, sts)
		}
		return WriteStatus(stdout, sts)
	case "rebuild":
		pos, err := parse(args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return bad("rebuild takes one projection name")
		}
		id, err := admin.StartRebuild(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rebuild %s of %s started\n", id, pos[0])
		if !*wait {
			fmt.Fprintf(stdout, "follow it with: mediamesh projections rebuild %s --wait (or GET /v1/admin/projections/%s/rebuild)\n", pos[0], pos[0])
			return nil
		}
		p, err := WaitRebuild(ctx, stderr, admin, pos[0], id, WaitOptions{})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rebuild %s completed: %s v%d serves (%d events replayed)\n", p.RebuildID, pos[0], p.ToVersion, p.Processed)
		return nil
	case "dlq":
		if len(args) < 2 {
			return bad("dlq needs list or replay")
		}
		pos, err := parse(args[2:])
		if err != nil {
			return err
		}
		switch args[1] {
		case "list":
			if len(pos) > 1 {
				return bad("dlq list takes at most one projection name")
			}
			name := ""
			if len(pos) == 1 {
				name = pos[0]
			}
			dls, err := admin.DeadLetters(ctx, name, *limit)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(stdout, dls)
			}
			return WriteDeadLetters(stdout, dls)
		case "replay":
			if len(pos) != 1 {
				return bad("dlq replay takes one projection name")
			}
			res, err := admin.Replay(ctx, pos[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: %d dead letters replayed, %d remain\n", pos[0], res.Replayed, res.Remaining)
			return nil
		}
		return bad("unknown dlq command " + strconv.Quote(args[1]))
	case "help", "-h", "--help":
		fmt.Fprint(stderr, usage)
		return nil
	}
	return bad("unknown command " + strconv.Quote(args[0]))
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteStatus writes the status table of `mediamesh projections status`.
func WriteStatus(w io.Writer, sts []rebuild.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "NAME\tVERSION\tSTATUS\tREBUILDABLE\tPOSITION\tHEAD\tLAG EVENTS\tLAG SECONDS\tDEAD LETTERS\t")
	for _, s := range sts {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%.1f\t%d\t\n", s.Name, s.Version, s.Status, yesNo(s.Rebuildable),
			s.Position, s.HeadPosition, s.LagEvents, s.LagSeconds, s.DeadLetters)
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// WriteDeadLetters writes the table of `mediamesh projections dlq list`.
func WriteDeadLetters(w io.Writer, dls []runtime.DeadLetter) error {
	if len(dls) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tVERSION\tPOSITION\tTYPE\tSTREAM\tVERSION IN STREAM\tPARKED\tATTEMPTS\tFAILED AT\tERROR")
	for _, d := range dls {
		msg := strings.Join(strings.Fields(d.Error), " ")
		if len(msg) > 120 {
			msg = msg[:117] + "..."
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", d.Projection, d.Version, d.Position, d.Type, d.StreamID,
			d.StreamVersion, yesNo(d.Parked), d.Attempts, d.FailedAt.UTC().Format(time.RFC3339), msg)
	}
	return tw.Flush()
}

// WaitOptions tune WaitRebuild; zero values take the defaults.
type WaitOptions struct {
	// Every is how often progress is read (default 500 ms).
	Every time.Duration
	// Unclaimed is how long a rebuild may go without a driver before WaitRebuild
	// says that no projector seems to run (default 15 s).
	Unclaimed time.Duration
}

// WaitRebuild follows the rebuild id of name with a progress bar on w until it
// completes (returning its final progress) or fails (ErrRebuildFailed with its
// error). When ctx ends first it returns ctx's error: the rebuild goes on in the
// projector.
func WaitRebuild(ctx context.Context, w io.Writer, admin Admin, name, id string, o WaitOptions) (rebuild.Progress, error) {
	if o.Every <= 0 {
		o.Every = 500 * time.Millisecond
	}
	if o.Unclaimed <= 0 {
		o.Unclaimed = 15 * time.Second
	}
	var bar *progressbar.ProgressBar
	start := time.Now()
	hinted := false
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		p, err := admin.Progress(ctx, name)
		if err != nil {
			return rebuild.Progress{}, err
		}
		if p.RebuildID != id {
			return p, fmt.Errorf("rebuild %s of %s was replaced by rebuild %s", id, name, p.RebuildID)
		}
		if bar == nil && p.Total > 0 {
			bar = progressbar.NewOptions64(p.Total,
				progressbar.OptionSetWriter(w),
				progressbar.OptionSetDescription(fmt.Sprintf("rebuild %s v%d→v%d", name, p.FromVersion, p.ToVersion)),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("events"),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetWidth(30),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
			)
		}
		if bar != nil {
			if p.Total != bar.GetMax64() {
				bar.ChangeMax64(max(p.Total, p.Processed))
			}
			_ = bar.Set64(p.Processed)
		}
		switch p.Status {
		case rebuild.RebuildCompleted:
			if bar != nil {
				_ = bar.Finish()
			}
			return p, nil
		case rebuild.RebuildFailed:
			if bar != nil {
				_ = bar.Exit()
				fmt.Fprintln(w)
			}
			return p, fmt.Errorf("%w: %s: %s", ErrRebuildFailed, name, p.Error)
		}
		if p.Total == 0 && !hinted && time.Since(start) > o.Unclaimed {
			hinted = true
			fmt.Fprintf(w, "rebuild %s has not been picked up yet: is a projector running (mediamesh serve --role all or projector)?\n", id)
		}
		select {
		case <-ctx.Done():
			if bar != nil {
				_ = bar.Exit()
				fmt.Fprintln(w)
			}
			return p, fmt.Errorf("stopped waiting (the rebuild goes on): %w", ctx.Err())
		case <-t.C:
		}
	}
}
