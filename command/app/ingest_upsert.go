package app

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

// UpsertProgram is one item of an ingest feed (API.md "Ingest feeds"): create the
// program of ExternalID or update it, add or update its episodes (matched by their
// external ids within the program), and publish or unpublish as Published says.
//
// Optional fields are pointers and nil leaves the stored value as it is; nothing is
// ever deleted. Title, Category and Language are required by the feed, so they are
// always compared. An absent episode Season defaults to 1 for a new episode and is
// left as it is for an existing one.
type UpsertProgram struct {
	// Meta.Actor is the job's submitter; Meta.IdempotencyKey and ExpectedVersion
	// are ignored (ids derive from JobID and Item instead).
	Meta Meta
	// JobID (a UUIDv7) and Item (the item's index in its feed) identify the item.
	// Every id the item creates and every event id it appends is derived from them,
	// so a redelivered item appends nothing twice and re-creates nothing.
	JobID string
	Item  int

	ExternalID         string
	Title              string
	Description        *string
	Category, Language string
	Tags               *[]string
	Published          *bool
	Episodes           []UpsertEpisode
}

// UpsertEpisode is one episode of an UpsertProgram.
type UpsertEpisode struct {
	ExternalID      string
	Title           string
	Number          int
	Season          *int
	Description     *string
	DurationSeconds int
	Published       *bool
}

// UpsertProgramHandler handles UpsertProgram.
type UpsertProgramHandler struct{ core core }

// NewUpsertProgramHandler returns the handler; it panics on a nil store.
func NewUpsertProgramHandler(store EventStore, opts ...Option) UpsertProgramHandler {
	return UpsertProgramHandler{core: newCore(store, opts)}
}

// episodePointerConcurrency bounds the concurrent appends of one item's new
// episodes' pointer streams.
const episodePointerConcurrency = 8

// Handle applies the item. It appends nothing when the stored program already
// matches it (Changed false), and otherwise all of the item's program events in ONE
// append to the program's stream (the aggregate records several events before it is
// appended), after the pointer streams that must exist first:
//
//  1. The external id resolves through its pointer stream
//     (events.ProgramExternalIDStreamID), read first. An unknown one is registered
//     with events.ExpectNoStream before the program exists, naming a program id
//     derived from (JobID, Item): of two items that bring the same new external id
//     at once, one registration wins and the other updates the winner's program, so
//     an external id never maps to two programs. A pointer whose program stream does
//     not exist yet (its creator crashed or is about to append) is created under the
//     pointer's id.
//  2. Every new episode gets its EpisodeRegistered pointer stream (as AddEpisode
//     does), so an episode id resolves to its program without a race. For a new
//     program these appends run concurrently with step 1's registration.
//  3. The program's events are appended with the loaded version as the expected
//     version (no stream for a new program); a version conflict reloads and decides
//     again, a bounded number of times.
//
// The program's own changes are decided by the aggregate's behaviour methods, which
// are called only for fields whose normalised value differs (so an unchanged item
// on an archived program succeeds with no events, while a changed one fails with
// program.ErrInvalidState). New episodes are added before the program is published,
// and episodes are published before the program, so discovery never sees a
// published program without its published episodes. Episode updates are applied in
// feed order: a feed that swaps two episodes' numbers fails with
// program.ErrDuplicateEpisodeNumber.
//
// With a store that implements MultiStreamAppender, steps 1–3 are one transaction
// (AppendMany): the pointers and the program's events commit together or not at
// all, and a conflict on the external id's pointer means another item won it (its
// program is then updated instead). Without one, they are separate appends in the
// order above (see MultiStreamAppender for why that is safe).
//
// Errors: *program.ValidationError, program.ErrInvalidState and
// program.ErrDuplicateEpisodeNumber are the item's fault (it failed); a version
// conflict after the retries, ErrIdempotencyKeyReused and store errors are not (a
// later delivery may succeed).
func (h UpsertProgramHandler) Handle(ctx context.Context, cmd UpsertProgram) (Result, error) {
	if _, err := uuid.Parse(cmd.JobID); err != nil {
		return Result{}, fmt.Errorf("upsert program: job id %q: %w", cmd.JobID, err)
	}
	in, err := normalizeUpsert(cmd)
	if err != nil {
		return Result{}, err
	}
	pointer := events.ProgramExternalIDStreamID(cmd.ExternalID)
	programID, err := h.resolveExternalID(ctx, pointer)
	if err != nil {
		return Result{}, err
	}
	multi, _ := h.core.store.(MultiStreamAppender)
	for attempt := 0; ; attempt++ {
		var (
			p                  *program.Program
			expected           int64
			loaded             *loaded
			episodesRegistered bool
			claim              bool // the external id's pointer is written with the program
			sequential         bool // one append per stream even with a multi-stream store
		)
		switch {
		case programID == "":
			// Decide on a fresh aggregate before anything is written: an item the
			// rules refuse leaves no pointer behind.
			id := derivedID(cmd.JobID, "program/"+strconv.Itoa(cmd.Item))
			if p, err = in.create(id, cmd); err != nil {
				return Result{}, err
			}
			if multi != nil {
				// The external id's pointer, the episodes' pointers and the
				// program's events go into one transaction below.
				programID, expected, claim = id, events.ExpectNoStream, true
				break
			}
			// The external id and the new episodes are registered at once: one
			// commit's wait instead of two. If another item wins the external id,
			// the episode pointers written here name a program that is never
			// created; episode commands treat such ids as not found, and the
			// winner's episodes get other ids (episode ids derive from the
			// program id too).
			var winner string
			g, gctx := errgroup.WithContext(ctx)
			g.Go(func() (err error) {
				winner, err = h.registerExternalID(gctx, cmd, pointer, id)
				return err
			})
			g.Go(func() error { return h.registerEpisodes(gctx, cmd, id, p.Pending()) })
			if err := g.Wait(); err != nil {
				return Result{}, err
			}
			if winner != id {
				programID = winner // another item registered it first: update that program
				continue
			}
			programID, expected, episodesRegistered = id, events.ExpectNoStream, true
		default:
			l, err := h.core.loadProgram(ctx, programID)
			switch {
			case errors.Is(err, ErrNotFound):
				if p, err = in.create(programID, cmd); err != nil {
					return Result{}, err
				}
				expected = events.ExpectNoStream
				// A pointer without its program: written by appends that were
				// not one transaction (another store, or this code's earlier
				// form), some of its episode pointers may exist already. The
				// separate appends below are idempotent per pointer.
				sequential = true
			case err != nil:
				return Result{}, err
			default:
				loaded, p, expected = &l, l.program, l.version()
				if err := in.apply(p, cmd); err != nil {
					return Result{}, err
				}
			}
		}

		streamID := events.ProgramStreamID(programID)
		pending := p.Pending()
		if len(pending) == 0 && loaded != nil {
			return Result{ID: programID, StreamID: streamID, Version: loaded.version(), Position: loaded.position()}, nil
		}
		meta := upsertMeta(cmd, "v"+strconv.FormatInt(expected, 10))
		envs, err := h.core.envelopes(meta, pending, 0)
		if err != nil {
			return Result{}, err
		}
		if multi != nil && !sequential {
			res, err := h.appendItem(ctx, multi, cmd, pointer, claim, programID, pending,
				events.StreamAppend{StreamID: streamID, ExpectedVersion: expected, Events: envs})
			if errors.Is(err, events.ErrVersionConflict) {
				if claim {
					// Another item may have registered the external id first:
					// then that program is the one to update.
					winner, rerr := h.resolveExternalID(ctx, pointer)
					if rerr != nil {
						return Result{}, rerr
					}
					if winner != "" {
						programID = winner
						continue
					}
					programID = ""
				}
				retry, cerr := conflict(Meta{}, streamID, attempt, err)
				if retry {
					continue
				}
				return Result{}, cerr
			}
			if err != nil {
				return Result{}, fmt.Errorf("upsert program %s: %w", cmd.ExternalID, err)
			}
			return Result{
				ID: programID, StreamID: streamID, Version: res.LastVersion, Position: res.Position,
				Changed: true, Created: expected == events.ExpectNoStream,
			}, nil
		}
		if !episodesRegistered {
			if err := h.registerEpisodes(ctx, cmd, programID, pending); err != nil {
				return Result{}, err
			}
		}
		res, err := h.core.store.Append(ctx, streamID, expected, envs)
		if errors.Is(err, events.ErrVersionConflict) {
			retry, cerr := conflict(Meta{}, streamID, attempt, err)
			if retry {
				continue
			}
			return Result{}, cerr
		}
		if err != nil {
			return Result{}, fmt.Errorf("upsert program %s: append to %s: %w", cmd.ExternalID, streamID, err)
		}
		if res.StreamID != "" && res.StreamID != streamID {
			return Result{}, fmt.Errorf("upsert program %s: its events are stored in %s: %w", cmd.ExternalID, res.StreamID, ErrIdempotencyKeyReused)
		}
		return Result{
			ID: programID, StreamID: streamID, Version: res.LastVersion, Position: res.Position,
			Changed: true, Created: expected == events.ExpectNoStream,
		}, nil
	}
}

// upsertMeta is the item's Meta with an idempotency key naming one of its appends,
// so core.envelopes derives the event ids from (job, item, what).
func upsertMeta(cmd UpsertProgram, what string) Meta {
	m := cmd.Meta
	m.IdempotencyKey = "ingest:" + cmd.JobID + ":" + strconv.Itoa(cmd.Item) + ":" + what
	m.ExpectedVersion = nil
	return m
}

// resolveExternalID returns the program id an external id's pointer names, or ""
// when it has none.
func (h UpsertProgramHandler) resolveExternalID(ctx context.Context, pointer string) (string, error) {
	envs, err := h.core.store.ReadStream(ctx, pointer)
	if errors.Is(err, events.ErrStreamNotFound) || (err == nil && len(envs) == 0) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read external id pointer %s: %w", pointer, err)
	}
	return h.pointerProgram(pointer, envs)
}

// registerExternalID appends the external id's pointer naming programID and returns
// the program the pointer names afterwards: programID, or the id another item
// registered first.
func (h UpsertProgramHandler) registerExternalID(ctx context.Context, cmd UpsertProgram, pointer, programID string) (string, error) {
	envs, err := h.core.envelopes(upsertMeta(cmd, "external-id"), []events.Event{
		events.ProgramExternalIDRegistered{ExternalID: cmd.ExternalID, ProgramID: programID},
	}, 0)
	if err != nil {
		return "", err
	}
	res, err := h.core.store.Append(ctx, pointer, events.ExpectNoStream, envs)
	if errors.Is(err, events.ErrVersionConflict) {
		winner, rerr := h.resolveExternalID(ctx, pointer)
		if rerr != nil {
			return "", rerr
		}
		if winner == "" {
			return "", fmt.Errorf("register %s: conflict, yet the pointer is empty: %w", pointer, err)
		}
		return winner, nil
	}
	if err != nil {
		return "", fmt.Errorf("register external id %s: %w", pointer, err)
	}
	if res.StreamID != "" && res.StreamID != pointer {
		return "", fmt.Errorf("register external id: the item's event is stored in %s: %w", res.StreamID, ErrIdempotencyKeyReused)
	}
	// A redelivered item finds its own registration here (same derived event id):
	// the pointer names the same derived program id, so programID is right either way.
	return programID, nil
}

// MultiStreamAppender is an event store that appends to several streams in one
// transaction, all or nothing (infra/eventstore/postgres.Store.AppendMany). With
// one, an item is one transaction: the external id's pointer (for a new program),
// its new episodes' pointers and the program's events commit together, which is
// what ingest throughput needs (one commit per item instead of 2 + episodes).
//
// Stores without it (EventStoreDB, whose transactions span one stream) get the
// separate appends in pointer-first order, which stays safe without atomicity: a
// pointer is written before anything that names it, so a crash between the appends
// leaves at worst a pointer naming a program that does not exist yet. The next
// delivery of the item (same derived ids) resolves that pointer and creates the
// program under its id; episode commands treat an episode pointer without its
// program as not found; and a pointer is never rewritten, so an external id never
// maps to two programs.
type MultiStreamAppender interface {
	AppendMany(ctx context.Context, parts []events.StreamAppend) ([]events.AppendResult, error)
}

// appendItem writes one item in one transaction: the external id's pointer when
// claim is set, the pointer of every episode added in pending, then prog (the
// program's events). It returns the program part's result.
func (h UpsertProgramHandler) appendItem(ctx context.Context, multi MultiStreamAppender, cmd UpsertProgram, pointer string, claim bool, programID string, pending []events.Event, prog events.StreamAppend) (events.AppendResult, error) {
	parts, err := h.pointerParts(cmd, pointer, claim, programID, pending)
	if err != nil {
		return events.AppendResult{}, err
	}
	parts = append(parts, prog)
	res, err := multi.AppendMany(ctx, parts)
	if err != nil {
		return events.AppendResult{}, err
	}
	for i, r := range res {
		if r.StreamID != "" && r.StreamID != parts[i].StreamID {
			return events.AppendResult{}, fmt.Errorf("the item's events are stored in %s: %w", r.StreamID, ErrIdempotencyKeyReused)
		}
	}
	return res[len(res)-1], nil
}

// pointerParts are the pointer streams an item's append writes before its
// program's events: the external id's pointer when claim is set, and the pointer
// of every episode added in pending.
func (h UpsertProgramHandler) pointerParts(cmd UpsertProgram, pointer string, claim bool, programID string, pending []events.Event) ([]events.StreamAppend, error) {
	var parts []events.StreamAppend
	if claim {
		envs, err := h.core.envelopes(upsertMeta(cmd, "external-id"), []events.Event{
			events.ProgramExternalIDRegistered{ExternalID: cmd.ExternalID, ProgramID: programID},
		}, 0)
		if err != nil {
			return nil, err
		}
		parts = append(parts, events.StreamAppend{StreamID: pointer, ExpectedVersion: events.ExpectNoStream, Events: envs})
	}
	for _, ev := range pending {
		added, ok := ev.(events.EpisodeAdded)
		if !ok {
			continue
		}
		envs, err := h.core.envelopes(upsertMeta(cmd, "episode:"+added.EpisodeID), []events.Event{
			events.EpisodeRegistered{EpisodeID: added.EpisodeID, ProgramID: programID},
		}, 0)
		if err != nil {
			return nil, err
		}
		parts = append(parts, events.StreamAppend{StreamID: events.EpisodeStreamID(added.EpisodeID), ExpectedVersion: events.ExpectNoStream, Events: envs})
	}
	return parts, nil
}

// registerEpisodes writes the pointer stream of every episode added in pending,
// concurrently (each is one independent append).
func (h UpsertProgramHandler) registerEpisodes(ctx context.Context, cmd UpsertProgram, programID string, pending []events.Event) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(episodePointerConcurrency)
	for _, ev := range pending {
		added, ok := ev.(events.EpisodeAdded)
		if !ok {
			continue
		}
		g.Go(func() error {
			envs, err := h.core.envelopes(upsertMeta(cmd, "episode:"+added.EpisodeID), []events.Event{
				events.EpisodeRegistered{EpisodeID: added.EpisodeID, ProgramID: programID},
			}, 0)
			if err != nil {
				return err
			}
			pointer := events.EpisodeStreamID(added.EpisodeID)
			res, err := h.core.store.Append(gctx, pointer, events.ExpectNoStream, envs)
			if err != nil {
				return fmt.Errorf("register episode %s: %w", pointer, err)
			}
			if res.StreamID != "" && res.StreamID != pointer {
				return fmt.Errorf("register episode: the item's event is stored in %s: %w", res.StreamID, ErrIdempotencyKeyReused)
			}
			return nil
		})
	}
	return g.Wait()
}

// derivedID returns a UUIDv7-shaped id derived from a job and a name: the job id's
// 48-bit millisecond timestamp (so ids stay time-ordered like fresh UUIDv7s) and 74
// bits of SHA-256(job/name). The same item of the same job always gets the same ids.
func derivedID(jobID, name string) string {
	job := uuid.MustParse(jobID)
	sum := sha256.Sum256([]byte(jobID + "/" + name))
	var u uuid.UUID
	copy(u[:6], job[:6])
	copy(u[6:], sum[:10])
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 4122 variant
	return u.String()
}

// upsertInput is an UpsertProgram's values normalised as the aggregate stores them,
// for comparing with a loaded program.
type upsertInput struct {
	program  program.NewProgram
	episodes []upsertEpisodeInput
}

type upsertEpisodeInput struct {
	// new is the episode as it is added when it does not exist (season defaulted).
	new            program.NewEpisode
	season         *int // as given (nil: leave an existing episode's season)
	hasDescription bool // false: leave an existing episode's description
	published      *bool
}

// normalizeUpsert checks the item with the aggregate's input rules (every invalid
// field at once, episodes prefixed "episodes[i]."), so nothing is decided on bad input.
func normalizeUpsert(cmd UpsertProgram) (upsertInput, error) {
	var fields []program.FieldError
	collect := func(prefix string, err error) error {
		var ve *program.ValidationError
		if errors.As(err, &ve) {
			for _, f := range ve.Fields {
				fields = append(fields, program.FieldError{Field: prefix + f.Field, Message: f.Message})
			}
			return nil
		}
		return err
	}
	if cmd.ExternalID == "" {
		fields = append(fields, program.FieldError{Field: "external_id", Message: "must not be empty"})
	}
	np := program.NewProgram{Title: cmd.Title, Category: cmd.Category, Language: cmd.Language, ExternalID: cmd.ExternalID}
	if cmd.Description != nil {
		np.Description = *cmd.Description
	}
	if cmd.Tags != nil {
		np.Tags = *cmd.Tags
	}
	var in upsertInput
	var err error
	in.program, err = program.NormalizeNewProgram(np)
	if err := collect("", err); err != nil {
		return upsertInput{}, err
	}
	seen := make(map[string]bool, len(cmd.Episodes))
	for i, e := range cmd.Episodes {
		prefix := "episodes[" + strconv.Itoa(i) + "]."
		if e.ExternalID == "" {
			fields = append(fields, program.FieldError{Field: prefix + "external_id", Message: "must not be empty"})
		} else if seen[e.ExternalID] {
			fields = append(fields, program.FieldError{Field: prefix + "external_id", Message: "appears twice in the item"})
		}
		seen[e.ExternalID] = true
		ne := program.NewEpisode{Title: e.Title, Number: e.Number, DurationSeconds: e.DurationSeconds, ExternalID: e.ExternalID}
		if e.Description != nil {
			ne.Description = *e.Description
		}
		if e.Season != nil {
			if _, err := program.NormalizeEpisodeChanges(program.EpisodeChanges{Season: e.Season}); collect(prefix, err) != nil {
				return upsertInput{}, err
			}
			ne.Season = *e.Season
		}
		norm, err := program.NormalizeNewEpisode(ne)
		if err := collect(prefix, err); err != nil {
			return upsertInput{}, err
		}
		in.episodes = append(in.episodes, upsertEpisodeInput{new: norm, season: e.Season, hasDescription: e.Description != nil, published: e.Published})
	}
	if len(fields) > 0 {
		return upsertInput{}, &program.ValidationError{Fields: fields}
	}
	return in, nil
}

// create decides a new program: created, its episodes added (and published as the
// item says), then published if the item says so.
func (in upsertInput) create(id string, cmd UpsertProgram) (*program.Program, error) {
	p, err := program.Create(id, in.program)
	if err != nil {
		return nil, err
	}
	if err := in.applyEpisodes(p, cmd); err != nil {
		return nil, err
	}
	if cmd.Published != nil && *cmd.Published {
		if err := p.Publish(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// apply decides the changes of an existing program.
func (in upsertInput) apply(p *program.Program, cmd UpsertProgram) error {
	var ch program.ProgramChanges
	changed := false
	if in.program.Title != p.Title() {
		ch.Title, changed = &in.program.Title, true
	}
	if cmd.Description != nil && in.program.Description != p.Description() {
		ch.Description, changed = &in.program.Description, true
	}
	if in.program.Category != p.Category() {
		ch.Category, changed = &in.program.Category, true
	}
	if in.program.Language != p.Language() {
		ch.Language, changed = &in.program.Language, true
	}
	if cmd.Tags != nil && !slices.Equal(in.program.Tags, p.Tags()) {
		ch.Tags, changed = &in.program.Tags, true
	}
	if changed {
		if err := p.Update(ch); err != nil {
			return err
		}
	}
	if err := in.applyEpisodes(p, cmd); err != nil {
		return err
	}
	if cmd.Published != nil {
		switch {
		case *cmd.Published && p.Status() != program.StatusPublished:
			return p.Publish()
		case !*cmd.Published && p.Status() == program.StatusPublished:
			return p.Unpublish()
		}
	}
	return nil
}

// applyEpisodes adds the item's new episodes and updates the existing ones (matched
// by external id; the first of the program's episodes with that id when an editor
// gave two the same), publishing or unpublishing each as the item says. "Not
// published" leaves a draft a draft.
func (in upsertInput) applyEpisodes(p *program.Program, cmd UpsertProgram) error {
	byExternalID := map[string]program.Episode{}
	for _, e := range p.Episodes() {
		if _, dup := byExternalID[e.ExternalID]; e.ExternalID != "" && !dup {
			byExternalID[e.ExternalID] = e
		}
	}
	for _, e := range in.episodes {
		cur, exists := byExternalID[e.new.ExternalID]
		if !exists {
			id := derivedID(cmd.JobID, "episode/"+strconv.Itoa(cmd.Item)+"/"+p.ID()+"/"+e.new.ExternalID)
			if err := p.AddEpisode(id, e.new); err != nil {
				return err
			}
			if e.published != nil && *e.published {
				if err := p.PublishEpisode(id); err != nil {
					return err
				}
			}
			continue
		}
		var ch program.EpisodeChanges
		changed := false
		if e.new.Title != cur.Title {
			ch.Title, changed = &e.new.Title, true
		}
		if e.new.Number != cur.Number {
			ch.Number, changed = &e.new.Number, true
		}
		if e.season != nil && e.new.Season != cur.Season {
			ch.Season, changed = &e.new.Season, true
		}
		if e.hasDescription && e.new.Description != cur.Description {
			ch.Description, changed = &e.new.Description, true
		}
		if e.new.DurationSeconds != cur.DurationSeconds {
			ch.DurationSeconds, changed = &e.new.DurationSeconds, true
		}
		if changed {
			if err := p.UpdateEpisode(cur.ID, ch); err != nil {
				return err
			}
		}
		if e.published != nil {
			var err error
			switch {
			case *e.published && cur.Status != program.StatusPublished:
				err = p.PublishEpisode(cur.ID)
			case !*e.published && cur.Status == program.StatusPublished:
				err = p.UnpublishEpisode(cur.ID)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
