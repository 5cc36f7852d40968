package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/config"
)

// benchOptions are the flags every suite shares.
type benchOptions struct {
	JSON        string
	Duration    time.Duration
	Warmup      time.Duration
	Concurrency int
	// ConcurrencySet is true when --concurrency was given; a suite whose work is
	// CPU-bound (assets) defaults to one worker per CPU otherwise.
	ConcurrencySet bool
	// MaxOps caps the measured operations of each result (besides Duration).
	MaxOps int64
	// Database is the scratch database the suite drops, recreates and drops again;
	// it is never the configured one.
	Database string
	Keep     bool
}

// benchSuite runs one suite and returns its results; the caller writes them.
type benchSuite func(ctx context.Context, e env, cfg config.Config, log *slog.Logger, o benchOptions) ([]bench.Result, error)

// benchSuites is the table of suites: add a suite by adding a line here and a
// bench_NAME.go beside this file.
func benchSuites() map[string]benchSuite {
	return map[string]benchSuite{
		"append":  benchAppend,
		"assets":  benchAssets,
		"auth":    benchAuth,
		"ingest":  benchIngest,
		"project": benchProject,
		"query":   benchQuery,
		"replay":  benchReplay,
	}
}

// benchArgs are the parsed arguments of `mediamesh bench`.
type benchArgs struct {
	suite      string
	run        benchSuite
	opts       benchOptions
	cpuProfile string
}

// parseBenchArgs reads `bench`'s arguments: the suite name (before or after the
// flags) and the flags, checked against their ranges. A bad one prints the usage
// and returns errUsage.
func parseBenchArgs(e env, args []string) (benchArgs, error) {
	suites := benchSuites()
	names := make([]string, 0, len(suites))
	for n := range suites {
		names = append(names, n)
	}
	sort.Strings(names)
	fs := newFlags(e, "bench", "SUITE --json FILE [flags]  (suites: "+strings.Join(names, ", ")+")")
	var a benchArgs
	o := &a.opts
	fs.StringVar(&o.JSON, "json", "", "write the results as JSON (../shared/bench.schema.json) to this file")
	fs.DurationVar(&o.Duration, "duration", 8*time.Second, "measured time of each result")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured warm-up before each result")
	fs.IntVar(&o.Concurrency, "concurrency", 16, "concurrent clients (the assets suite: one per CPU unless given)")
	fs.Int64Var(&o.MaxOps, "max-ops", 1_000_000, "most measured operations of each result (the run also stops after --duration)")
	fs.StringVar(&o.Database, "database", "mediamesh_bench", "scratch database on the server of MEDIAMESH_DATABASE_URL (dropped and recreated)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the scratch database after the run")
	fs.StringVar(&a.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (client and in-process server) to this file")
	// The suite name may come before or after the flags.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		a.suite, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return benchArgs{}, err
	}
	if a.suite == "" && fs.NArg() > 0 {
		// The flags stop at the name: parse those after it too.
		a.suite = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return benchArgs{}, err
		}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "mediamesh bench: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return benchArgs{}, errUsage
	}
	fs.Visit(func(f *flag.Flag) { o.ConcurrencySet = o.ConcurrencySet || f.Name == "concurrency" })
	var ok bool
	a.run, ok = suites[a.suite]
	if !ok || o.Concurrency < 1 || o.Concurrency > 1024 || o.Duration <= 0 || o.Duration > 10*time.Minute || o.Warmup < 0 || o.Warmup > time.Minute || o.MaxOps < 1 {
		fmt.Fprintf(e.stderr, "mediamesh bench: unknown suite %q or flags out of range (concurrency 1–1024, duration up to 10m, warm-up up to 1m, max-ops at least 1)\n", a.suite)
		fs.Usage()
		return benchArgs{}, errUsage
	}
	if o.Database == "" || o.Database == "postgres" || strings.HasPrefix(o.Database, "template") {
		return benchArgs{}, fmt.Errorf("bench: --database %q cannot be a scratch database", o.Database)
	}
	return a, nil
}

// runBench runs `mediamesh bench SUITE --json FILE`: progress on standard error, a
// human summary on standard output, and the JSON document (validated against the
// bench schema) in FILE.
func runBench(ctx context.Context, e env, args []string) error {
	a, err := parseBenchArgs(e, args)
	if err != nil {
		return err
	}
	suiteName, suite, o, cpuProfile := a.suite, a.run, a.opts, a.cpuProfile
	cfg, log, err := setup(e)
	if err != nil {
		return err
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	doc := bench.NewDocument(suiteName)
	results, err := suite(ctx, e, cfg, log, o)
	if err != nil {
		return fmt.Errorf("bench %s: %w", suiteName, err)
	}
	doc.Results = results
	if o.JSON != "" {
		if err := doc.WriteFile(o.JSON); err != nil {
			return err
		}
	} else if _, err := doc.Marshal(); err != nil { // still check it against the schema
		return err
	}
	if err := bench.WriteSummary(e.stdout, doc); err != nil {
		return err
	}
	if o.JSON != "" {
		fmt.Fprintf(e.stdout, "results written to %s\n", o.JSON)
	}
	if !doc.TargetsMet() {
		fmt.Fprintln(e.stdout, "some targets were missed (see MISSED above)")
	}
	return nil
}

// benchDatabase makes the suite's scratch database (o.Database, dropped and
// recreated on the server of cfg.DatabaseURL, with poolSize connections per pool
// unless the URL sets them), migrates it, and returns its URL, an open pool on it,
// and done, which closes the pool and drops the database (unless --keep). A suite
// that opens pools of its own may close this one at once.
func benchDatabase(ctx context.Context, log *slog.Logger, cfg config.Config, o benchOptions, poolSize int) (string, *pgxpool.Pool, func(), error) {
	url, drop, err := scratchDatabase(ctx, log, cfg.DatabaseURL, o.Database, poolSize)
	if err != nil {
		return "", nil, nil, err
	}
	pool, err := openMigrated(ctx, url)
	if err != nil {
		if !o.Keep {
			drop()
		}
		return "", nil, nil, err
	}
	return url, pool, func() {
		pool.Close()
		if !o.Keep {
			drop()
		}
	}, nil
}
