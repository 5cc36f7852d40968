package main

import (
	"context"
	"fmt"

	"github.com/mediamesh/mediamesh/command/app"
)

// demoCategories and demoLanguages spread the demo catalog over a few facets.
var (
	demoCategories = []string{"documentary", "drama", "comedy", "kids", "news", "sports"}
	demoLanguages  = []string{"en", "fr", "de", "es"}
)

// runSeed creates N published demo programs with two published episodes each,
// through the command handlers (the write side's own rules and events).
//
// Every command carries an idempotency key derived from the program's number, so
// the event ids are the same on every run: seeding twice appends nothing new and
// `make run` can seed on every start.
func runSeed(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "seed", "[--programs N]")
	n := fs.Int("programs", 20, "number of demo programs (1–100000)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *n < 1 || *n > 100000 || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	cfg, log, err := setup(e)
	if err != nil {
		return err
	}
	deps, err := openDeps(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer deps.close()
	h := app.NewHandlers(deps.store)
	for i := 1; i <= *n; i++ {
		if err := seedProgram(ctx, h, i); err != nil {
			return err
		}
		if i%100 == 0 {
			log.Info("seeding", "programs", i, "of", *n)
		}
	}
	log.Info("seeded demo catalog", "programs", *n, "episodes", 2**n)
	return nil
}

func seedProgram(ctx context.Context, h app.Handlers, i int) error {
	meta := func(key string) app.Meta {
		return app.Meta{Actor: "seed", IdempotencyKey: fmt.Sprintf("seed:program:%d:%s", i, key), CorrelationID: fmt.Sprintf("seed-%d", i)}
	}
	prog, err := h.CreateProgram.Handle(ctx, app.CreateProgram{
		Meta:        meta("create"),
		Title:       fmt.Sprintf("Demo program %d", i),
		Description: fmt.Sprintf("The %d. program of MediaMesh's demo catalog.", i),
		Category:    demoCategories[i%len(demoCategories)],
		Language:    demoLanguages[i%len(demoLanguages)],
		Tags:        []string{"demo", fmt.Sprintf("batch-%d", i/10)},
		ExternalID:  fmt.Sprintf("demo-%d", i),
	})
	if err != nil {
		return fmt.Errorf("seed program %d: %w", i, err)
	}
	for ep := 1; ep <= 2; ep++ {
		res, err := h.AddEpisode.Handle(ctx, app.AddEpisode{
			Meta:            meta(fmt.Sprintf("episode:%d", ep)),
			ProgramID:       prog.ID,
			Title:           fmt.Sprintf("Demo program %d, episode %d", i, ep),
			Number:          ep,
			Season:          1,
			Description:     "A demo episode.",
			DurationSeconds: 1200 + 60*ep,
			ExternalID:      fmt.Sprintf("demo-%d-%d", i, ep),
		})
		if err != nil {
			return fmt.Errorf("seed program %d episode %d: %w", i, ep, err)
		}
		if _, err := h.PublishEpisode.Handle(ctx, app.PublishEpisode{Meta: meta(fmt.Sprintf("episode:%d:publish", ep)), EpisodeID: res.ID}); err != nil {
			return fmt.Errorf("publish program %d episode %d: %w", i, ep, err)
		}
	}
	if _, err := h.PublishProgram.Handle(ctx, app.PublishProgram{Meta: meta("publish"), ProgramID: prog.ID}); err != nil {
		return fmt.Errorf("publish program %d: %w", i, err)
	}
	return nil
}
