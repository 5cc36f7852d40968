// Command mediamesh is MediaMesh's one binary and its composition root: the only
// package that knows every adapter. Each subcommand lives in its own file; main only
// dispatches.
//
// Exit codes: 0 success, 1 failure, 2 bad usage (unknown subcommand or flag).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mediamesh/mediamesh/infra/telemetry"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// env is the process's outside world, passed explicitly so tests run subcommands
// in-process.
type env struct {
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	getenv  func(string) string
	environ func() []string
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e env, args []string) error
}

// commands lists the subcommands in the order `mediamesh help` shows them.
func commands() []command {
	return []command{
		{"serve", "run the HTTP roles (--role all|command|query|relay|projector|ingest)", runServe},
		{"migrate", "apply (up) or list (status) the database migrations", runMigrate},
		{"users", "create an account or change its role: users create|set-role (the first admin)", runUsers},
		{"token", "mint an access token: token --role R --subject S [--ttl D]", runToken},
		{"ingest", "submit a feed file and wait for its job: ingest FILE [--no-worker]", runIngest},
		{"seed", "create demo programs and episodes: seed --programs N", runSeed},
		{"projections", "projection status, rebuilds and dead letters: projections status|rebuild NAME [--wait]|dlq list|replay", runProjections},
		{"bench", "run a benchmark suite: bench SUITE --json FILE", runBench},
		{"config", "print the effective configuration (redacted), or --markdown for the key table", runConfig},
		{"version", "print the version", runVersion},
	}
}

// errUsage marks a usage error (exit code 2); the message was already printed.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, environ: os.Environ}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches args to a subcommand and turns its error into an exit code,
// logging it once, here at the edge.
func run(ctx context.Context, e env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			attrs := []any{"error", err.Error()}
			var joined interface{ Unwrap() []error }
			if errors.As(err, &joined) {
				var problems []string
				for _, p := range joined.Unwrap() {
					problems = append(problems, p.Error())
				}
				attrs = append(attrs, "problems", problems)
			}
			newLogger(e.stderr, slog.LevelInfo).Error(c.name+" failed", attrs...)
			return 1
		}
	}
	fmt.Fprintf(e.stderr, "mediamesh: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mediamesh COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `mediamesh COMMAND --help` for a command's flags; `mediamesh serve --help` lists every environment variable.")
}

// newLogger returns the JSON logger every subcommand logs through: it redacts
// secrets whatever logs them and adds trace ids (infra/telemetry.NewLogger).
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return telemetry.NewLogger(w, level)
}

// newFlags returns a flag set that reports errors instead of exiting, with its
// usage printed to e.stderr.
func newFlags(e env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: mediamesh %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs, mapping a bad flag to errUsage and --help to
// flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}
