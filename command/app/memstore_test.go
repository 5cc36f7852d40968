package app

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/mediamesh/mediamesh/events"
)

// memStore is an in-memory EventStore for the handler tests. It honours expected
// versions and event-id idempotency like the real adapters: an append whose first
// event id is already stored returns the original AppendResult and writes nothing
// (checked before the expected version, since a retry's version is stale).
type memStore struct {
	mu       sync.Mutex
	streams  map[string][]events.Envelope
	byID     map[string]events.AppendResult
	position int64

	// conflicts makes the next n appends fail with a version conflict.
	conflicts int
	// failStream makes the next append to this stream fail with errBroken.
	failStream string
	// beforeAppend, when set, runs (without the lock) before each append; tests use
	// it to slip in a concurrent writer.
	beforeAppend func(streamID string)

	appendCalls int
	writes      int
}

var errBroken = errors.New("store broke")

func newMemStore() *memStore {
	return &memStore{streams: map[string][]events.Envelope{}, byID: map[string]events.AppendResult{}}
}

func (s *memStore) Append(ctx context.Context, streamID string, expected int64, evs []events.Envelope) (events.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return events.AppendResult{}, err
	}
	if hook := s.hook(); hook != nil {
		hook(streamID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appendCalls++
	if len(evs) == 0 {
		return events.AppendResult{}, errors.New("append of no events")
	}
	if s.conflicts > 0 {
		s.conflicts--
		return events.AppendResult{}, fmt.Errorf("injected: %w", events.ErrVersionConflict)
	}
	if s.failStream == streamID {
		s.failStream = ""
		return events.AppendResult{}, errBroken
	}
	if res, ok := s.byID[evs[0].EventID]; ok {
		return res, nil
	}
	cur := int64(len(s.streams[streamID]))
	switch {
	case expected == events.ExpectAny:
	case expected != cur:
		return events.AppendResult{}, fmt.Errorf("%s at %d, expected %d: %w", streamID, cur, expected, events.ErrVersionConflict)
	}
	res := events.AppendResult{StreamID: streamID, FirstVersion: cur + 1}
	for _, e := range evs {
		cur++
		s.position += 10 // positions need not be dense
		e.StreamID, e.Version, e.Position = streamID, cur, s.position
		s.streams[streamID] = append(s.streams[streamID], e)
	}
	res.LastVersion, res.Position = cur, s.position
	for _, e := range evs {
		s.byID[e.EventID] = res
	}
	s.writes++
	return res, nil
}

func (s *memStore) hook() func(string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beforeAppend
}

func (s *memStore) ReadStream(ctx context.Context, streamID string) ([]events.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	evs, ok := s.streams[streamID]
	if !ok {
		return nil, fmt.Errorf("%s: %w", streamID, events.ErrStreamNotFound)
	}
	return append([]events.Envelope(nil), evs...), nil
}

func (s *memStore) stream(streamID string) []events.Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]events.Envelope(nil), s.streams[streamID]...)
}

func (s *memStore) streamCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

func (s *memStore) writeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

func (s *memStore) set(f func(s *memStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}
