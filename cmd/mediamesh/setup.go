package main

import (
	"fmt"
	"log/slog"

	"github.com/mediamesh/mediamesh/infra/config"
)

// setup loads and validates the configuration and returns the logger at its level.
// Unknown MEDIAMESH_* variables (usually typos) are logged as warnings.
func setup(e env) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(e.getenv)
	if err != nil {
		return config.Config{}, nil, fmt.Errorf("invalid configuration (see `mediamesh serve --help`): %w", err)
	}
	log := newLogger(e.stderr, cfg.LogLevel)
	if e.environ != nil {
		for _, name := range config.Unknown(e.environ()) {
			log.Warn("unknown configuration variable ignored", "variable", name)
		}
	}
	return cfg, log, nil
}
