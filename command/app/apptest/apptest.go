// Package apptest drives the real command handlers for the tests of other
// packages (projections, rebuilds, end-to-end runs) that need a catalog history.
package apptest

import (
	"context"
	"fmt"

	"github.com/mediamesh/mediamesh/command/app"
)

// PublishProgram creates program i (category drama, news or kids by i) with one
// episode, publishes both through h, and returns the program's id.
func PublishProgram(ctx context.Context, h app.Handlers, i int) (string, error) {
	cats := []string{"drama", "news", "kids"}
	res, err := h.CreateProgram.Handle(ctx, app.CreateProgram{
		Title: fmt.Sprintf("Program %d", i), Category: cats[i%len(cats)], Language: "en", Tags: []string{"t"},
	})
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	ep, err := h.AddEpisode.Handle(ctx, app.AddEpisode{ProgramID: res.ID, Title: "Pilot", Number: 1, DurationSeconds: 60})
	if err != nil {
		return "", fmt.Errorf("add episode: %w", err)
	}
	if _, err := h.PublishEpisode.Handle(ctx, app.PublishEpisode{EpisodeID: ep.ID}); err != nil {
		return "", fmt.Errorf("publish episode: %w", err)
	}
	if _, err := h.PublishProgram.Handle(ctx, app.PublishProgram{ProgramID: res.ID}); err != nil {
		return "", fmt.Errorf("publish: %w", err)
	}
	return res.ID, nil
}
