package main

import (
	"context"
	"fmt"

	"github.com/mediamesh/mediamesh/infra/config"
)

// runConfig prints the effective configuration with secrets redacted, or with
// --markdown the key table that the README embeds.
func runConfig(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "config", "[--markdown]")
	markdown := fs.Bool("markdown", false, "print the key table as Markdown (for the README) instead of the effective values")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *markdown {
		_, err := fmt.Fprint(e.stdout, config.Markdown())
		return err
	}
	cfg, _, err := setup(e)
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(e.stdout, cfg.String())
	return err
}
