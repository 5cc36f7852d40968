package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/mediamesh/mediamesh/events"
)

// MultiStreamReader is an event store that reads several streams in one round trip
// (infra/eventstore/postgres.Store.ReadStreams): stream id -> its events, oldest
// first; a stream that does not exist is absent. Without one, HandleBatch reads the
// streams one by one, concurrently.
type MultiStreamReader interface {
	ReadStreams(ctx context.Context, streamIDs []string) (map[string][]events.Envelope, error)
}

// UpsertOutcome is what HandleBatch reports for one item: Handle's result or error.
type UpsertOutcome struct {
	Result Result
	Err    error
}

// batchConcurrency bounds the items HandleBatch applies at once one by one (a
// store without AppendMany, or a group that could not be written in one
// transaction), and the streams it reads at once without a MultiStreamReader.
const batchConcurrency = 8

// HandleBatch applies several items (of any jobs) and returns one outcome per item,
// in the order of cmds, each what Handle would have returned for it. Items of one
// external id are applied in their order in cmds; items of different external ids
// are independent.
//
// With a MultiStreamAppender it is group commit: the items are split into rounds
// (an external id's first item in the first round, its second in the second, and
// so on), and each round is decided as Handle decides one item (the external ids'
// pointers and the programs read in one round trip each with a MultiStreamReader)
// and written with ONE AppendMany: every changed item's pointers and program
// events in one transaction, which is what ingest throughput needs (one commit
// per round of a hundred items instead of one per item). The round's expected
// versions guard it as they guard Handle's append; if the transaction fails for any
// reason (a concurrent writer, an external id registered meanwhile, a store error),
// nothing of it was written and its changed items are handled one by one with
// Handle, which retries conflicts. Without a MultiStreamAppender every round's
// items go through Handle, batchConcurrency at a time.
//
// A redelivered batch is safe as a redelivered item is: decisions compare the
// stored state with the item, so an item whose round committed appends nothing the
// second time, and event ids derive from (job, item, expected version).
func (h UpsertProgramHandler) HandleBatch(ctx context.Context, cmds []UpsertProgram) []UpsertOutcome {
	out := make([]UpsertOutcome, len(cmds))
	var rounds [][]int
	seen := make(map[string]int, len(cmds))
	for i, cmd := range cmds {
		r := seen[cmd.ExternalID]
		seen[cmd.ExternalID] = r + 1
		if r == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], i)
	}
	multi, _ := h.core.store.(MultiStreamAppender)
	for _, round := range rounds {
		if ctx.Err() != nil {
			for _, i := range round {
				out[i].Err = fmt.Errorf("upsert program %s: %w", cmds[i].ExternalID, ctx.Err())
			}
			continue
		}
		one := round
		if multi != nil {
			one = h.groupRound(ctx, multi, cmds, round, out)
		}
		h.oneByOne(ctx, cmds, one, out)
	}
	return out
}

// oneByOne handles the items idx with Handle, batchConcurrency at a time (they are
// of distinct external ids).
func (h UpsertProgramHandler) oneByOne(ctx context.Context, cmds []UpsertProgram, idx []int, out []UpsertOutcome) {
	var g errgroup.Group
	g.SetLimit(batchConcurrency)
	for _, i := range idx {
		g.Go(func() error {
			out[i].Result, out[i].Err = h.Handle(ctx, cmds[i])
			return nil
		})
	}
	_ = g.Wait()
}

// groupItem is one item of a round being decided for a group commit.
type groupItem struct {
	i         int
	in        upsertInput
	pointer   string
	programID string
	// progPart is the index of the program's part in the round's parts.
	progPart int
}

// groupRound decides the items idx (of distinct external ids) against the stored
// state and writes every change in one AppendMany. It records the outcome of every
// item it settled in out and returns the items left for Handle: those whose state
// it could not decide here, or all the changed ones when the transaction failed.
func (h UpsertProgramHandler) groupRound(ctx context.Context, multi MultiStreamAppender, cmds []UpsertProgram, idx []int, out []UpsertOutcome) []int {
	var (
		items []groupItem
		rest  []int
	)
	pointers := make([]string, 0, len(idx))
	for _, i := range idx {
		cmd := cmds[i]
		if _, err := uuid.Parse(cmd.JobID); err != nil {
			rest = append(rest, i) // Handle reports it
			continue
		}
		in, err := normalizeUpsert(cmd)
		if err != nil {
			out[i].Err = err
			continue
		}
		it := groupItem{i: i, in: in, pointer: events.ProgramExternalIDStreamID(cmd.ExternalID)}
		items = append(items, it)
		pointers = append(pointers, it.pointer)
	}
	if len(items) == 0 {
		return rest
	}
	all := func() []int {
		for _, it := range items {
			rest = append(rest, it.i)
		}
		return rest
	}
	ptrs, err := h.readStreams(ctx, pointers)
	if err != nil {
		return all()
	}
	var programStreams []string
	for k := range items {
		it := &items[k]
		envs := ptrs[it.pointer]
		if len(envs) == 0 {
			continue
		}
		id, err := h.pointerProgram(it.pointer, envs)
		if err != nil {
			return all() // Handle reports it per item
		}
		it.programID = id
		programStreams = append(programStreams, events.ProgramStreamID(id))
	}
	progs, err := h.readStreams(ctx, programStreams)
	if err != nil {
		return all()
	}

	var parts []events.StreamAppend
	var changed []*groupItem
	streams := map[string]bool{}
	for k := range items {
		it := &items[k]
		cmd := cmds[it.i]
		var (
			pending  []events.Event
			expected int64
			claim    bool
		)
		switch envs := progs[events.ProgramStreamID(it.programID)]; {
		case it.programID == "":
			it.programID = derivedID(cmd.JobID, "program/"+strconv.Itoa(cmd.Item))
			p, err := it.in.create(it.programID, cmd)
			if err != nil {
				out[it.i].Err = err
				continue
			}
			pending, expected, claim = p.Pending(), events.ExpectNoStream, true
		case len(envs) == 0:
			// A pointer without its program (see Handle): its separate appends.
			rest = append(rest, it.i)
			continue
		default:
			l, err := h.core.programFrom(it.programID, envs)
			if err != nil {
				out[it.i].Err = err
				continue
			}
			if err := it.in.apply(l.program, cmd); err != nil {
				out[it.i].Err = err
				continue
			}
			pending, expected = l.program.Pending(), l.version()
			if len(pending) == 0 {
				out[it.i].Result = Result{ID: it.programID, StreamID: events.ProgramStreamID(it.programID), Version: l.version(), Position: l.position()}
				continue
			}
		}
		itemParts, err := h.itemParts(cmd, it.pointer, claim, it.programID, pending, expected)
		if err != nil {
			out[it.i].Err = err
			continue
		}
		dup := false
		for _, p := range itemParts {
			dup = dup || streams[p.StreamID]
		}
		if dup {
			// Two items of the round touch one stream (two external ids naming
			// one program): this one waits for Handle, after the round.
			rest = append(rest, it.i)
			continue
		}
		for _, p := range itemParts {
			streams[p.StreamID] = true
		}
		parts = append(parts, itemParts...)
		it.progPart = len(parts) - 1
		changed = append(changed, it)
	}
	if len(parts) == 0 {
		return rest
	}
	res, err := multi.AppendMany(ctx, parts)
	if err == nil {
		for k, r := range res {
			if r.StreamID != "" && r.StreamID != parts[k].StreamID {
				err = fmt.Errorf("events of the batch are stored in %s: %w", r.StreamID, ErrIdempotencyKeyReused)
			}
		}
	}
	if err != nil {
		// Nothing of the round was written: Handle takes its changed items.
		for _, it := range changed {
			rest = append(rest, it.i)
		}
		return rest
	}
	for _, it := range changed {
		r := res[it.progPart]
		out[it.i].Result = Result{
			ID: it.programID, StreamID: r.StreamID, Version: r.LastVersion, Position: r.Position,
			Changed: true, Created: parts[it.progPart].ExpectedVersion == events.ExpectNoStream,
		}
	}
	return rest
}

// itemParts are one item's parts of a multi-stream append, as Handle's appendItem
// writes them: the external id's pointer when claim is set, the pointer of every
// episode added in pending, then the program's events (last).
func (h UpsertProgramHandler) itemParts(cmd UpsertProgram, pointer string, claim bool, programID string, pending []events.Event, expected int64) ([]events.StreamAppend, error) {
	parts, err := h.pointerParts(cmd, pointer, claim, programID, pending)
	if err != nil {
		return nil, err
	}
	envs, err := h.core.envelopes(upsertMeta(cmd, "v"+strconv.FormatInt(expected, 10)), pending, 0)
	if err != nil {
		return nil, err
	}
	return append(parts, events.StreamAppend{StreamID: events.ProgramStreamID(programID), ExpectedVersion: expected, Events: envs}), nil
}

// readStreams reads streams with the store's MultiStreamReader, or one by one
// (batchConcurrency at a time) without one; absent streams are absent.
func (h UpsertProgramHandler) readStreams(ctx context.Context, ids []string) (map[string][]events.Envelope, error) {
	if len(ids) == 0 {
		return map[string][]events.Envelope{}, nil
	}
	if r, ok := h.core.store.(MultiStreamReader); ok {
		return r.ReadStreams(ctx, ids)
	}
	out := make([][]events.Envelope, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(batchConcurrency)
	for k, id := range ids {
		g.Go(func() error {
			envs, err := h.core.store.ReadStream(gctx, id)
			if errors.Is(err, events.ErrStreamNotFound) {
				return nil
			}
			out[k] = envs
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	m := make(map[string][]events.Envelope, len(ids))
	for k, id := range ids {
		if len(out[k]) > 0 {
			m[id] = out[k]
		}
	}
	return m, nil
}

// pointerProgram decodes an external id's pointer stream into the program id it
// names (as resolveExternalID does).
func (h UpsertProgramHandler) pointerProgram(pointer string, envs []events.Envelope) (string, error) {
	ev, err := h.core.codec.DecodeEnvelope(envs[0])
	if err != nil {
		return "", fmt.Errorf("decode external id pointer %s: %w", pointer, err)
	}
	reg, ok := ev.(events.ProgramExternalIDRegistered)
	if !ok || !validID(reg.ProgramID) {
		return "", fmt.Errorf("external id pointer %s holds %T %+v, want ProgramExternalIDRegistered", pointer, ev, ev)
	}
	return reg.ProgramID, nil
}
