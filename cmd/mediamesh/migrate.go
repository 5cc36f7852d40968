package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
)

// runMigrate applies (up) or lists (status) the embedded migrations on
// MEDIAMESH_DATABASE_URL; up creates the database when it is missing.
func runMigrate(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "migrate", "up|status")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || (fs.Arg(0) != "up" && fs.Arg(0) != "status") {
		fs.Usage()
		return errUsage
	}
	cfg, log, err := setup(e)
	if err != nil {
		return err
	}
	pool, err := pginfra.Connect(ctx, cfg.DatabaseURL, fs.Arg(0) == "up")
	if err != nil {
		return err
	}
	defer pool.Close()
	if fs.Arg(0) == "up" {
		if err := pginfra.Migrate(ctx, pool); err != nil {
			return err
		}
		log.Info("migrations applied")
	}
	st, err := pginfra.MigrationsStatus(ctx, pool)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tFILE")
	for _, m := range st {
		state := "pending"
		if m.Applied {
			state = "applied"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, state, m.Source)
	}
	return tw.Flush()
}
