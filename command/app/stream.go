package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

// maxRetries is how many times a command without an expected version is run again
// (load, decide, append) after a version conflict, so at most 1+maxRetries attempts.
// Each retry sees the newer stream, so a conflicting editor's change is never lost
// and the rules are checked against it.
const maxRetries = 5

// idempotencyNamespace is the fixed UUIDv5 namespace of event ids derived from an
// Idempotency-Key. Changing it would let a retried request append twice: never do.
var idempotencyNamespace = uuid.MustParse("5f0e8f5c-5b1e-4d57-9a3e-6c1d2f0b7a41")

// Option adjusts a handler; the defaults are right for production.
type Option func(*core)

// WithClock sets the clock that stamps OccurredAt (tests); the default is time.Now.
// Times are stored in UTC.
func WithClock(now func() time.Time) Option {
	return func(c *core) { c.now = now }
}

// core is what every handler shares: the store, one codec built once per handler,
// and the clock.
type core struct {
	store EventStore
	codec *events.Codec
	now   func() time.Time
}

func newCore(store EventStore, opts []Option) core {
	if store == nil {
		panic("app: nil EventStore")
	}
	c := core{store: store, codec: events.NewCodec(), now: time.Now}
	for _, o := range opts {
		o(&c)
	}
	if c.now == nil {
		panic("app: nil clock")
	}
	return c
}

// loaded is a program loaded from its stream, with the stored envelopes it came from.
type loaded struct {
	program *program.Program
	records []program.Recorded
	envs    []events.Envelope
}

func (l loaded) version() int64 { return l.envs[len(l.envs)-1].Version }

func (l loaded) position() int64 { return l.envs[len(l.envs)-1].Position }

// validID reports whether id can name a stream of ours: ids are UUIDs, so anything
// else cannot exist and is answered as not found without a round trip.
func validID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

// readProgramStream returns a program's stored events; ErrNotFound when it has none.
func (c core) readProgramStream(ctx context.Context, programID string) ([]events.Envelope, error) {
	if !validID(programID) {
		return nil, fmt.Errorf("program %q: %w", programID, ErrNotFound)
	}
	envs, err := c.store.ReadStream(ctx, events.ProgramStreamID(programID))
	if errors.Is(err, events.ErrStreamNotFound) || (err == nil && len(envs) == 0) {
		return nil, fmt.Errorf("program %s: %w", programID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read program %s: %w", programID, err)
	}
	return envs, nil
}

// loadProgram reads and decodes a program's stream and rebuilds the aggregate.
func (c core) loadProgram(ctx context.Context, programID string) (loaded, error) {
	envs, err := c.readProgramStream(ctx, programID)
	if err != nil {
		return loaded{}, err
	}
	return c.programFrom(programID, envs)
}

// programFrom decodes a program's stored events (at least one) and rebuilds the
// aggregate.
func (c core) programFrom(programID string, envs []events.Envelope) (loaded, error) {
	records := make([]program.Recorded, len(envs))
	for i, env := range envs {
		ev, err := c.codec.DecodeEnvelope(env)
		if err != nil {
			return loaded{}, fmt.Errorf("load program %s: version %d: %w", programID, env.Version, err)
		}
		records[i] = program.Recorded{Event: ev, Version: env.Version, OccurredAt: env.OccurredAt}
	}
	p, err := program.Load(records)
	if err != nil {
		return loaded{}, err
	}
	return loaded{program: p, records: records, envs: envs}, nil
}

// resolveEpisode reads an episode's pointer stream and returns its program's id.
func (c core) resolveEpisode(ctx context.Context, episodeID string) (string, error) {
	if !validID(episodeID) {
		return "", fmt.Errorf("episode %q: %w", episodeID, ErrNotFound)
	}
	envs, err := c.store.ReadStream(ctx, events.EpisodeStreamID(episodeID))
	if errors.Is(err, events.ErrStreamNotFound) || (err == nil && len(envs) == 0) {
		return "", fmt.Errorf("episode %s: %w", episodeID, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read episode %s pointer: %w", episodeID, err)
	}
	ev, err := c.codec.DecodeEnvelope(envs[0])
	if err != nil {
		return "", fmt.Errorf("decode episode %s pointer: %w", episodeID, err)
	}
	reg, ok := ev.(events.EpisodeRegistered)
	if !ok {
		return "", fmt.Errorf("episode %s pointer holds %T, want EpisodeRegistered", episodeID, ev)
	}
	return reg.ProgramID, nil
}

// eventID returns the id of the index-th event a command appends: derived from the
// Idempotency-Key when there is one (so a retried command carries the same ids and
// the store turns its append into a no-op), otherwise a fresh UUIDv7.
func eventID(meta Meta, index int) (string, error) {
	if meta.IdempotencyKey != "" {
		return uuid.NewSHA1(idempotencyNamespace, []byte(meta.IdempotencyKey+"/"+strconv.Itoa(index))).String(), nil
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("new event id: %w", err)
	}
	return id.String(), nil
}

// newID returns a fresh UUIDv7 for a program or an episode.
func newID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("new id: %w", err)
	}
	return id.String(), nil
}

// envelopes encodes evs with the command's metadata; the i-th gets event id index
// firstIndex+i.
func (c core) envelopes(meta Meta, evs []events.Event, firstIndex int) ([]events.Envelope, error) {
	now := c.now().UTC()
	out := make([]events.Envelope, len(evs))
	for i, ev := range evs {
		typ, data, err := c.codec.Encode(ev)
		if err != nil {
			return nil, err
		}
		id, err := eventID(meta, firstIndex+i)
		if err != nil {
			return nil, err
		}
		out[i] = events.Envelope{
			EventID:    id,
			Type:       typ,
			OccurredAt: now,
			Metadata: events.Metadata{
				CorrelationID: meta.CorrelationID,
				CausationID:   meta.CausationID,
				Actor:         meta.Actor,
				TraceParent:   meta.TraceParent,
				TraceState:    meta.TraceState,
			},
			Data: data,
		}
	}
	return out, nil
}

// replayed looks for the events a previous run of the same command (same
// Idempotency-Key) appended to the loaded stream, starting at event index firstIndex.
// It returns the last of them: the original response names its version and position.
// This answers a retried command with its original result even when the stream
// changed since, and before any rule is checked against the newer state.
func replayed(meta Meta, envs []events.Envelope, firstIndex int) (events.Envelope, bool) {
	if meta.IdempotencyKey == "" {
		return events.Envelope{}, false
	}
	byID := make(map[string]int, len(envs))
	for i, env := range envs {
		byID[env.EventID] = i
	}
	var last events.Envelope
	found := false
	for idx := firstIndex; ; idx++ {
		id, _ := eventID(meta, idx) // derived ids cannot fail
		i, ok := byID[id]
		if !ok {
			return last, found
		}
		last, found = envs[i], true
	}
}

// checkExpected compares the If-Match version with the loaded one.
func checkExpected(meta Meta, streamID string, version int64) error {
	if meta.ExpectedVersion != nil && *meta.ExpectedVersion != version {
		return fmt.Errorf("%s is at version %d, not %d: %w", streamID, version, *meta.ExpectedVersion, ErrPreconditionFailed)
	}
	return nil
}

// conflict turns an append's version conflict into the command's answer: with an
// If-Match version it is ErrPreconditionFailed; without one, retry reports whether
// another attempt is allowed, and after the last attempt the conflict itself is
// returned (409).
func conflict(meta Meta, streamID string, attempt int, err error) (retry bool, _ error) {
	if meta.ExpectedVersion != nil {
		return false, fmt.Errorf("append to %s: the stream changed since version %d: %w", streamID, *meta.ExpectedVersion, ErrPreconditionFailed)
	}
	if attempt < maxRetries {
		return true, nil
	}
	return false, fmt.Errorf("append to %s after %d attempts: %w", streamID, attempt+1, err)
}

// changeProgram runs one command against an existing program: load, decide, append
// with the loaded version as the expected version, retrying on conflicts as the
// package documents. decide calls one behaviour method of the aggregate. The result
// names the program's stream; the caller fills in ID and ProgramID.
func (c core) changeProgram(ctx context.Context, meta Meta, programID string, decide func(*program.Program) error) (Result, error) {
	streamID := events.ProgramStreamID(programID)
	for attempt := 0; ; attempt++ {
		l, err := c.loadProgram(ctx, programID)
		if err != nil {
			return Result{}, err
		}
		if env, ok := replayed(meta, l.envs, 0); ok {
			return Result{StreamID: streamID, Version: env.Version, Position: env.Position, Changed: true}, nil
		}
		if err := checkExpected(meta, streamID, l.version()); err != nil {
			return Result{}, err
		}
		if err := decide(l.program); err != nil {
			return Result{}, err
		}
		pending := l.program.Pending()
		if len(pending) == 0 {
			return Result{StreamID: streamID, Version: l.version(), Position: l.position()}, nil
		}
		envs, err := c.envelopes(meta, pending, 0)
		if err != nil {
			return Result{}, err
		}
		res, err := c.store.Append(ctx, streamID, l.version(), envs)
		if errors.Is(err, events.ErrVersionConflict) {
			retry, cerr := conflict(meta, streamID, attempt, err)
			if retry {
				continue
			}
			return Result{}, cerr
		}
		if err != nil {
			return Result{}, fmt.Errorf("append to %s: %w", streamID, err)
		}
		if res.StreamID != "" && res.StreamID != streamID {
			return Result{}, fmt.Errorf("events of this command are stored in %s: %w", res.StreamID, ErrIdempotencyKeyReused)
		}
		return Result{StreamID: streamID, Version: res.LastVersion, Position: res.Position, Changed: true}, nil
	}
}

// changeEpisode resolves an episode's program through its pointer stream and runs
// one command on the program. An episode the program does not hold (a pointer left
// by an add that failed afterwards) is ErrNotFound, like an unknown id.
func (c core) changeEpisode(ctx context.Context, meta Meta, episodeID string, decide func(*program.Program) error) (Result, error) {
	programID, err := c.resolveEpisode(ctx, episodeID)
	if err != nil {
		return Result{}, err
	}
	res, err := c.changeProgram(ctx, meta, programID, func(p *program.Program) error {
		err := decide(p)
		if errors.Is(err, program.ErrEpisodeNotFound) {
			return fmt.Errorf("episode %s is not in program %s: %w", episodeID, programID, ErrNotFound)
		}
		return err
	})
	if err != nil {
		return Result{}, err
	}
	res.ID, res.ProgramID = episodeID, programID
	return res, nil
}
