package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

// AddEpisode adds a draft episode to a program (POST /v1/programs/{id}/episodes).
type AddEpisode struct {
	Meta      Meta
	ProgramID string
	Title     string
	Number    int
	// Season 0 means season 1.
	Season          int
	Description     string
	DurationSeconds int
	ExternalID      string
}

// AddEpisodeHandler handles AddEpisode.
type AddEpisodeHandler struct{ core core }

// NewAddEpisodeHandler returns the handler; it panics on a nil store.
func NewAddEpisodeHandler(store EventStore, opts ...Option) AddEpisodeHandler {
	return AddEpisodeHandler{core: newCore(store, opts)}
}

// Event indexes of AddEpisode's derived event ids.
const (
	pointerEventIndex = 0 // EpisodeRegistered on the episode's pointer stream
	addedEventIndex   = 1 // EpisodeAdded on the program's stream
)

// Handle adds the episode in two appends:
//
//  1. EpisodeRegistered{EpisodeID, ProgramID} on the new episode's pointer stream,
//     expecting no stream: how an episode id later resolves to its program from the
//     event store alone, without a race (the pointer never changes).
//  2. EpisodeAdded on the program's stream with the loaded version as the expected
//     version: this is where the rules (number unique in its season, program not
//     archived) are enforced atomically.
//
// The program is loaded and the episode validated before the pointer is written, so
// bad input leaves nothing behind. If step 2 still fails (a concurrent add took the
// number), the pointer stays without an episode; episode commands and reads treat
// such an id as not found.
//
// With an Idempotency-Key, a retried request finds its EpisodeAdded in the program's
// stream and reports the original episode; if only the pointer had been written, the
// pointer append returns the original stream and the episode is added under the
// original id. The result's version is the program stream's.
func (h AddEpisodeHandler) Handle(ctx context.Context, cmd AddEpisode) (Result, error) {
	streamID := events.ProgramStreamID(cmd.ProgramID)
	in := program.NewEpisode{
		Title:           cmd.Title,
		Number:          cmd.Number,
		Season:          cmd.Season,
		Description:     cmd.Description,
		DurationSeconds: cmd.DurationSeconds,
		ExternalID:      cmd.ExternalID,
	}
	episodeID, err := newID()
	if err != nil {
		return Result{}, err
	}
	registered := false // the pointer is written once per call, whatever the retries
	for attempt := 0; ; attempt++ {
		l, err := h.core.loadProgram(ctx, cmd.ProgramID)
		if err != nil {
			return Result{}, err
		}
		if env, ok := replayed(cmd.Meta, l.envs, addedEventIndex); ok {
			return h.original(cmd, env)
		}
		if err := checkExpected(cmd.Meta, streamID, l.version()); err != nil {
			return Result{}, err
		}
		if err := l.program.AddEpisode(episodeID, in); err != nil {
			return Result{}, err
		}
		p := l.program
		if !registered {
			id, err := h.register(ctx, cmd, episodeID)
			if err != nil {
				return Result{}, err
			}
			registered = true
			if id != episodeID {
				// A retried request whose first run wrote only the pointer: add the
				// episode under the original id, decided afresh.
				episodeID = id
				if p, err = program.Load(l.records); err != nil {
					return Result{}, err
				}
				if err := p.AddEpisode(episodeID, in); err != nil {
					return Result{}, err
				}
			}
		}
		envs, err := h.core.envelopes(cmd.Meta, p.Pending(), addedEventIndex)
		if err != nil {
			return Result{}, err
		}
		res, err := h.core.store.Append(ctx, streamID, l.version(), envs)
		if errors.Is(err, events.ErrVersionConflict) {
			retry, cerr := conflict(cmd.Meta, streamID, attempt, err)
			if retry {
				continue
			}
			return Result{}, cerr
		}
		if err != nil {
			return Result{}, fmt.Errorf("add episode: append to %s: %w", streamID, err)
		}
		if res.StreamID != "" && res.StreamID != streamID {
			return Result{}, fmt.Errorf("add episode: events of this command are stored in %s: %w", res.StreamID, ErrIdempotencyKeyReused)
		}
		return Result{
			ID: episodeID, ProgramID: cmd.ProgramID,
			StreamID: streamID, Version: res.LastVersion, Position: res.Position,
			Changed: true, Created: true,
		}, nil
	}
}

// register writes the episode's pointer stream and returns the episode id it names:
// episodeID, or for a retried request (derived event id already stored) the id the
// first run registered, after checking that it points at the same program.
func (h AddEpisodeHandler) register(ctx context.Context, cmd AddEpisode, episodeID string) (string, error) {
	envs, err := h.core.envelopes(cmd.Meta, []events.Event{events.EpisodeRegistered{EpisodeID: episodeID, ProgramID: cmd.ProgramID}}, pointerEventIndex)
	if err != nil {
		return "", err
	}
	pointer := events.EpisodeStreamID(episodeID)
	res, err := h.core.store.Append(ctx, pointer, events.ExpectNoStream, envs)
	if err != nil {
		return "", fmt.Errorf("add episode: register %s: %w", pointer, err)
	}
	if res.StreamID == "" || res.StreamID == pointer {
		return episodeID, nil
	}
	orig, ok := strings.CutPrefix(res.StreamID, events.EpisodeStreamID(""))
	if !ok || !validID(orig) {
		return "", fmt.Errorf("add episode: events of this command are stored in %s: %w", res.StreamID, ErrIdempotencyKeyReused)
	}
	programID, err := h.core.resolveEpisode(ctx, orig)
	if err != nil {
		return "", err
	}
	if programID != cmd.ProgramID {
		return "", fmt.Errorf("add episode: the key registered episode %s in program %s: %w", orig, programID, ErrIdempotencyKeyReused)
	}
	return orig, nil
}

// original answers a retried AddEpisode whose EpisodeAdded is already stored.
func (h AddEpisodeHandler) original(cmd AddEpisode, env events.Envelope) (Result, error) {
	ev, err := h.core.codec.DecodeEnvelope(env)
	if err != nil {
		return Result{}, fmt.Errorf("add episode: decode original event: %w", err)
	}
	added, ok := ev.(events.EpisodeAdded)
	if !ok {
		return Result{}, fmt.Errorf("add episode: the key's event in program %s is %s: %w", cmd.ProgramID, env.Type, ErrIdempotencyKeyReused)
	}
	return Result{
		ID: added.EpisodeID, ProgramID: cmd.ProgramID,
		StreamID: events.ProgramStreamID(cmd.ProgramID), Version: env.Version, Position: env.Position,
		Changed: true, Created: true,
	}, nil
}
