package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/mediamesh/mediamesh/events"
)

// ReadStreams returns the events of several streams in one query: stream id ->
// its events, oldest first. A stream that does not exist is absent from the map
// (not an error). Like ReadStream it is not bounded by the global log's readable
// position: a writer sees its own appends at once. It exists for writers that
// decide many streams at once (ingest loads a batch of items' pointers and
// programs with one round trip instead of one per stream).
func (s *Store) ReadStreams(ctx context.Context, streamIDs []string) (map[string][]events.Envelope, error) {
	out := make(map[string][]events.Envelope, len(streamIDs))
	if len(streamIDs) == 0 {
		return out, nil
	}
	for _, id := range streamIDs {
		if id == "" {
			return nil, errors.New("read streams: empty stream id")
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM eventstore_events
		WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version`, streamIDs)
	if err != nil {
		return nil, fmt.Errorf("read %d streams: %w", len(streamIDs), err)
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return nil, fmt.Errorf("read %d streams: %w", len(streamIDs), err)
	}
	for _, e := range evs {
		out[e.StreamID] = append(out[e.StreamID], e)
	}
	return out, nil
}
