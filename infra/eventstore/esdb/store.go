// Package esdb is MediaMesh's production event store: the event store port
// (eventstoretest.Store) on EventStoreDB / KurrentDB through
// github.com/EventStore/EventStore-Client-Go/v4 (the same client talks to both).
//
// Mapping:
//
//   - Versions are revisions + 1 (revisions count from 0, versions from 1);
//     events.ExpectNoStream is NoStream, events.ExpectAny is Any and an exact version v
//     is revision v-1. ErrorCodeWrongExpectedVersion becomes events.ErrVersionConflict.
//   - Positions are commit positions in the transaction log ($all). Every event that a
//     gRPC append writes is "self-committed": its commit position is its own log
//     position (commit == prepare), so each event has its own, and user events never
//     sit at 0: positions are > 0 and strictly increasing in $all order, and a
//     position is a valid place to resume reading from. Recent KurrentDB servers
//     report that position on stream reads too; older EventStoreDB servers send "no
//     position" there, and ReadStream then leaves Position at 0 (the conformance
//     suite's round-trip test fails on such a server, which is the point of it).
//   - ReadAll, Subscribe and HeadPosition skip system streams and events (names or
//     types starting with "$"): the server's own bookkeeping is not MediaMesh's log.
//   - Type, Data and Metadata: the event type is ESDB's event type, Data its JSON
//     payload byte for byte, and the custom metadata carries MediaMesh's Metadata plus
//     occurred_at (and $correlationId/$causationId, so the server's
//     $by_correlation_id projection works when enabled).
//
// # Idempotency
//
// The server deduplicates a retried append by event id only for recent writes to
// the same stream (and only best effort with Any). The port promises more: a retried
// batch returns the original result even when it names another stream. So each
// append records its result in a marker stream named after its first event id
// (MarkerStreamPrefix + id, one event of the system type MarkerEventType, which
// global reads skip), and Append looks there first. When an append committed but
// its marker did not (a crash in between), a retry is recognised by the server's
// dedup or by reading the events back from the stream. Marker streams may be
// truncated by a $maxAge policy after the retry window without harm.
package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	kurrent "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/events"
)

// MarkerStreamPrefix starts the name of the stream that records an append's result,
// followed by the append's first event id.
const MarkerStreamPrefix = "mediamesh-append-"

// MarkerEventType is the type of the marker event; the "$" makes it a system event
// that ReadAll and Subscribe skip.
const MarkerEventType = "$mediamesh.append-result"

// headScanLimit bounds how far back HeadPosition and the retry position lookup read
// $all for a MediaMesh event before giving up.
const headScanLimit = 100_000

// Store is the EventStoreDB / KurrentDB event store. It is safe for concurrent use.
type Store struct {
	client *kurrent.Client
	owned  bool
}

// New returns a store on client; Close does not close a client passed here.
func New(client *kurrent.Client) *Store {
	return &Store{client: client}
}

// Dial connects to url (a connection string such as
// "esdb://127.0.0.1:2113?tls=false" or "kurrentdb+discover://…") and returns a store
// that owns the client: Close closes it.
func Dial(url string) (*Store, error) {
	cfg, err := kurrent.ParseConnectionString(url)
	if err != nil {
		return nil, fmt.Errorf("parse eventstoredb connection string: %w", err)
	}
	client, err := kurrent.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("eventstoredb client: %w", err)
	}
	return &Store{client: client, owned: true}, nil
}

// Close closes the client if Dial made it.
func (s *Store) Close() error {
	if !s.owned {
		return nil
	}
	return s.client.Close()
}

// customMetadata is what the store keeps in an event's custom metadata.
type customMetadata struct {
	events.Metadata
	OccurredAt time.Time `json:"occurred_at"`
	// The server's conventional keys, for its $by_correlation_id projection.
	ESCorrelationID string `json:"$correlationId,omitempty"`
	ESCausationID   string `json:"$causationId,omitempty"`
}

// marker is the content of an append's marker event.
type marker struct {
	Result   events.AppendResult `json:"result"`
	EventIDs []string            `json:"event_ids"`
}

// expectedRevision maps a port expected version to the client's.
func expectedRevision(expected int64) (kurrent.ExpectedRevision, error) {
	switch {
	case expected == events.ExpectAny:
		return kurrent.Any{}, nil
	case expected == events.ExpectNoStream:
		return kurrent.NoStream{}, nil
	case expected > 0:
		return kurrent.StreamRevision{Value: uint64(expected - 1)}, nil
	}
	return nil, fmt.Errorf("invalid expected version %d", expected)
}

// toEventData validates evs and converts them; it returns their ids too.
func toEventData(streamID string, evs []events.Envelope) ([]kurrent.EventData, []string, error) {
	switch {
	case streamID == "":
		return nil, nil, errors.New("empty stream id")
	case strings.HasPrefix(streamID, "$"):
		return nil, nil, fmt.Errorf("stream id %q names a system stream", streamID)
	case len(evs) == 0:
		return nil, nil, errors.New("no events")
	}
	out := make([]kurrent.EventData, len(evs))
	ids := make([]string, len(evs))
	seen := make(map[uuid.UUID]bool, len(evs))
	now := time.Now()
	for i, e := range evs {
		id, err := eventID(e.EventID)
		if err != nil {
			return nil, nil, err
		}
		if seen[id] {
			return nil, nil, fmt.Errorf("event id %s twice in one append", id)
		}
		seen[id] = true
		if e.Type == "" || strings.HasPrefix(e.Type, "$") {
			return nil, nil, fmt.Errorf("event %s: type %q is empty or a system type", id, e.Type)
		}
		if e.Data != nil && !json.Valid(e.Data) {
			return nil, nil, fmt.Errorf("event %s: data is not valid JSON", id)
		}
		at := e.OccurredAt
		if at.IsZero() {
			at = now
		}
		meta, err := json.Marshal(customMetadata{
			Metadata:        e.Metadata,
			OccurredAt:      at.UTC().Truncate(time.Microsecond),
			ESCorrelationID: e.Metadata.CorrelationID,
			ESCausationID:   e.Metadata.CausationID,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("encode metadata of event %s: %w", id, err)
		}
		out[i] = kurrent.EventData{EventID: id, EventType: e.Type, ContentType: kurrent.ContentTypeJson, Data: e.Data, Metadata: meta}
		ids[i] = id.String()
	}
	return out, ids, nil
}

func eventID(id string) (uuid.UUID, error) {
	if id == "" {
		u, err := uuid.NewV7()
		if err != nil {
			return uuid.Nil, fmt.Errorf("generate event id: %w", err)
		}
		return u, nil
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, fmt.Errorf("event id %q is not a uuid: %w", id, err)
	}
	return u, nil
}

// toEnvelope converts a recorded event.
func toEnvelope(rec *kurrent.RecordedEvent) (events.Envelope, error) {
	e := events.Envelope{
		EventID:  rec.EventID.String(),
		Type:     rec.EventType,
		StreamID: rec.StreamID,
		Version:  int64(rec.EventNumber) + 1,
		Position: position(rec.Position),
	}
	if len(rec.Data) > 0 {
		e.Data = json.RawMessage(rec.Data)
	}
	e.OccurredAt = rec.CreatedDate.UTC()
	if len(rec.UserMetadata) > 0 {
		var m customMetadata
		if err := json.Unmarshal(rec.UserMetadata, &m); err != nil {
			return events.Envelope{}, fmt.Errorf("decode metadata of event %s: %w", e.EventID, err)
		}
		e.Metadata = m.Metadata
		if !m.OccurredAt.IsZero() {
			e.OccurredAt = m.OccurredAt.UTC()
		}
	}
	return e, nil
}

// position maps a log position to the port's, 0 when the server reported none.
func position(p kurrent.Position) int64 {
	if p.Commit == math.MaxUint64 || p.Commit > math.MaxInt64 {
		return 0
	}
	return int64(p.Commit)
}

// fromPosition is where a read of $all after the port position after starts; it
// includes after itself, which callers skip.
func fromPosition(after int64) kurrent.AllPosition {
	if after <= 0 {
		return kurrent.Start{}
	}
	return kurrent.Position{Commit: uint64(after), Prepare: uint64(after)}
}

// isSystem reports whether a recorded event is the server's (or a marker), not
// part of MediaMesh's log.
func isSystem(rec *kurrent.RecordedEvent) bool {
	return rec == nil || strings.HasPrefix(rec.StreamID, "$") || strings.HasPrefix(rec.EventType, "$")
}

func hasCode(err error, code kurrent.ErrorCode) bool {
	var esErr *kurrent.Error
	return errors.As(err, &esErr) && esErr.Code() == code
}

// Append writes evs to streamID if its version is expectedVersion; see the package
// documentation for idempotency.
func (s *Store) Append(ctx context.Context, streamID string, expectedVersion int64, evs []events.Envelope) (events.AppendResult, error) {
	data, ids, err := toEventData(streamID, evs)
	if err != nil {
		return events.AppendResult{}, fmt.Errorf("append to stream %s: %w", streamID, err)
	}
	rev, err := expectedRevision(expectedVersion)
	if err != nil {
		return events.AppendResult{}, fmt.Errorf("append to stream %s: %w", streamID, err)
	}
	if res, ok, err := s.readMarker(ctx, ids); err != nil || ok {
		return res, err
	}

	wr, err := s.client.AppendToStream(ctx, streamID, kurrent.AppendToStreamOptions{ExpectedRevision: rev}, data...)
	if err != nil {
		if !hasCode(err, kurrent.ErrorCodeWrongExpectedVersion) {
			return events.AppendResult{}, fmt.Errorf("append to stream %s: %w", streamID, err)
		}
		// A retry racing its original, or one whose marker was never written.
		if res, ok, rerr := s.recover(ctx, streamID, ids); rerr != nil || ok {
			return res, rerr
		}
		return events.AppendResult{}, fmt.Errorf("append to stream %s at expected version %d: %v: %w", streamID, expectedVersion, err, events.ErrVersionConflict)
	}
	if wr.CommitPosition == 0 {
		// The server recognised the event ids and wrote nothing (it reports no
		// position then): answer with the original append.
		res, ok, rerr := s.recover(ctx, streamID, ids)
		if rerr != nil {
			return events.AppendResult{}, rerr
		}
		if !ok {
			return events.AppendResult{}, fmt.Errorf("append to stream %s: the server reported no position and the events are not in the stream", streamID)
		}
		return res, nil
	}
	last := int64(wr.NextExpectedVersion) + 1
	res := events.AppendResult{
		StreamID:     streamID,
		FirstVersion: last - int64(len(evs)) + 1,
		LastVersion:  last,
		Position:     int64(wr.CommitPosition),
	}
	s.writeMarker(ctx, res, ids)
	return res, nil
}

// recover finds the original append of ids after the server refused or deduplicated
// a retry: from its marker, else by reading the events back from streamID.
func (s *Store) recover(ctx context.Context, streamID string, ids []string) (events.AppendResult, bool, error) {
	if res, ok, err := s.readMarker(ctx, ids); err != nil || ok {
		return res, ok, err
	}
	res, ok, err := s.readBack(ctx, streamID, ids)
	if err != nil || !ok {
		return res, ok, err
	}
	s.writeMarker(ctx, res, ids)
	return res, true, nil
}

func markerStream(ids []string) string { return MarkerStreamPrefix + ids[0] }

// readMarker returns the recorded result of the append that began with ids[0].
func (s *Store) readMarker(ctx context.Context, ids []string) (events.AppendResult, bool, error) {
	stream := markerStream(ids)
	rs, err := s.client.ReadStream(ctx, stream, kurrent.ReadStreamOptions{Direction: kurrent.Forwards, From: kurrent.Start{}}, 1)
	if err != nil {
		return events.AppendResult{}, false, fmt.Errorf("read append marker %s: %w", stream, err)
	}
	defer rs.Close()
	ev, err := rs.Recv()
	switch {
	case errors.Is(err, io.EOF), hasCode(err, kurrent.ErrorCodeResourceNotFound), hasCode(err, kurrent.ErrorCodeStreamDeleted):
		return events.AppendResult{}, false, nil
	case err != nil:
		return events.AppendResult{}, false, fmt.Errorf("read append marker %s: %w", stream, err)
	}
	var m marker
	if err := json.Unmarshal(ev.OriginalEvent().Data, &m); err != nil {
		return events.AppendResult{}, false, fmt.Errorf("decode append marker %s: %w", stream, err)
	}
	if strings.Join(m.EventIDs, ",") != strings.Join(ids, ",") {
		return events.AppendResult{}, false, fmt.Errorf("event id %s was appended in another batch (%d events) than this one (%d)", ids[0], len(m.EventIDs), len(ids))
	}
	return m.Result, true, nil
}

// writeMarker records an append's result. It is best effort: the append has
// committed, and a missing marker only makes a later retry take the slower way.
func (s *Store) writeMarker(ctx context.Context, res events.AppendResult, ids []string) {
	body, err := json.Marshal(marker{Result: res, EventIDs: ids})
	if err != nil {
		return
	}
	id, err := uuid.NewV7()
	if err != nil {
		return
	}
	ev := kurrent.EventData{EventID: id, EventType: MarkerEventType, ContentType: kurrent.ContentTypeJson, Data: body}
	// NoStream: a concurrent retry that recovered the same append wrote the same
	// content first, which is fine.
	_, _ = s.client.AppendToStream(context.WithoutCancel(ctx), markerStream(ids), kurrent.AppendToStreamOptions{ExpectedRevision: kurrent.NoStream{}}, ev)
}

// readBack looks for ids, in order, in streamID and rebuilds their append's result.
func (s *Store) readBack(ctx context.Context, streamID string, ids []string) (events.AppendResult, bool, error) {
	evs, err := s.ReadStream(ctx, streamID)
	if errors.Is(err, events.ErrStreamNotFound) {
		return events.AppendResult{}, false, nil
	}
	if err != nil {
		return events.AppendResult{}, false, err
	}
	for i, e := range evs {
		if e.EventID != ids[0] {
			continue
		}
		if len(evs)-i < len(ids) {
			return events.AppendResult{}, false, fmt.Errorf("event id %s is stored in %s, but not with the rest of this batch", ids[0], streamID)
		}
		for j, id := range ids {
			if evs[i+j].EventID != id {
				return events.AppendResult{}, false, fmt.Errorf("event id %s is stored in %s, but not with the rest of this batch", ids[0], streamID)
			}
		}
		lastEv := evs[i+len(ids)-1]
		pos := lastEv.Position
		if pos == 0 {
			if pos, err = s.positionOf(ctx, lastEv.EventID); err != nil {
				return events.AppendResult{}, false, err
			}
		}
		return events.AppendResult{StreamID: streamID, FirstVersion: evs[i].Version, LastVersion: lastEv.Version, Position: pos}, true, nil
	}
	return events.AppendResult{}, false, nil
}

// positionOf finds a recent event's log position by reading $all backwards.
func (s *Store) positionOf(ctx context.Context, eventID string) (int64, error) {
	rs, err := s.client.ReadAll(ctx, kurrent.ReadAllOptions{Direction: kurrent.Backwards, From: kurrent.End{}}, headScanLimit)
	if err != nil {
		return 0, fmt.Errorf("find position of event %s: %w", eventID, err)
	}
	defer rs.Close()
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("find position of event %s: not among the last %d events of $all", eventID, headScanLimit)
		}
		if err != nil {
			return 0, fmt.Errorf("find position of event %s: %w", eventID, err)
		}
		if rec := ev.OriginalEvent(); rec != nil && rec.EventID.String() == eventID {
			return position(rec.Position), nil
		}
	}
}

// ReadStream returns the stream's events oldest first, or events.ErrStreamNotFound
// (also for a deleted stream).
func (s *Store) ReadStream(ctx context.Context, streamID string) ([]events.Envelope, error) {
	rs, err := s.client.ReadStream(ctx, streamID, kurrent.ReadStreamOptions{Direction: kurrent.Forwards, From: kurrent.Start{}}, math.MaxUint64)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", streamID, err)
	}
	defer rs.Close()
	var out []events.Envelope
	for {
		ev, err := rs.Recv()
		switch {
		case errors.Is(err, io.EOF):
			if len(out) == 0 {
				return nil, fmt.Errorf("read stream %s: %w", streamID, events.ErrStreamNotFound)
			}
			return out, nil
		case hasCode(err, kurrent.ErrorCodeResourceNotFound), hasCode(err, kurrent.ErrorCodeStreamDeleted):
			return nil, fmt.Errorf("read stream %s: %w", streamID, events.ErrStreamNotFound)
		case err != nil:
			return nil, fmt.Errorf("read stream %s: %w", streamID, err)
		}
		e, err := toEnvelope(ev.OriginalEvent())
		if err != nil {
			return nil, fmt.Errorf("read stream %s: %w", streamID, err)
		}
		out = append(out, e)
	}
}

// ReadAll returns at most limit MediaMesh events with Position > after, in log order.
// after must be 0 or a position this store returned.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]events.Envelope, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("read all: limit %d, want > 0", limit)
	}
	// Read until limit events are collected, however many system events lie between;
	// closing the read stops the server.
	rs, err := s.client.ReadAll(ctx, kurrent.ReadAllOptions{Direction: kurrent.Forwards, From: fromPosition(after)}, math.MaxUint64)
	if err != nil {
		return nil, fmt.Errorf("read all after %d: %w", after, err)
	}
	defer rs.Close()
	var out []events.Envelope
	for len(out) < limit {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read all after %d: %w", after, err)
		}
		rec := ev.OriginalEvent()
		if isSystem(rec) || position(rec.Position) <= after {
			continue
		}
		e, err := toEnvelope(rec)
		if err != nil {
			return nil, fmt.Errorf("read all after %d: %w", after, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// HeadPosition returns the position of the newest MediaMesh event in $all, or 0.
func (s *Store) HeadPosition(ctx context.Context) (int64, error) {
	rs, err := s.client.ReadAll(ctx, kurrent.ReadAllOptions{Direction: kurrent.Backwards, From: kurrent.End{}}, headScanLimit)
	if err != nil {
		return 0, fmt.Errorf("head position: %w", err)
	}
	defer rs.Close()
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("head position: %w", err)
		}
		if rec := ev.OriginalEvent(); !isSystem(rec) {
			return position(rec.Position), nil
		}
	}
}

// received is one event, or the end, from a subscription's receiving goroutine.
type received struct {
	event events.Envelope
	err   error
}

// Subscribe hands every MediaMesh event with Position > after to handle in log
// order, in batches of at most batchSize, until ctx ends or handle fails. It is a
// catch-up subscription to $all with the server-side filter that excludes system
// events; a batch is whatever has arrived (up to batchSize) when the previous one is
// handled, so it fills up under load and stays small when idle.
func (s *Store) Subscribe(ctx context.Context, after int64, batchSize int, handle func(context.Context, []events.Envelope) error) error {
	if batchSize <= 0 {
		return fmt.Errorf("subscribe: batch size %d, want > 0", batchSize)
	}
	sub, err := s.client.SubscribeToAll(ctx, kurrent.SubscribeToAllOptions{
		From:   fromPosition(after),
		Filter: kurrent.ExcludeSystemEventsFilter(),
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("subscribe after %d: %w", after, err)
	}
	quit := make(chan struct{})
	in := make(chan received, batchSize)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.receive(sub, after, in, quit)
	}()
	defer func() {
		close(quit)
		_ = sub.Close()
		<-done
	}()

	batch := make([]events.Envelope, 0, batchSize)
	for {
		var r received
		select {
		case r = <-in:
		case <-ctx.Done():
			return ctx.Err()
		}
		batch = batch[:0]
		for {
			if r.err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("subscribe after %d: %w", after, r.err)
			}
			batch = append(batch, r.event)
			if len(batch) == batchSize {
				break
			}
			select {
			case r = <-in:
				continue
			default:
			}
			break
		}
		if err := handle(ctx, batch); err != nil {
			return fmt.Errorf("subscribe: handle events %d..%d: %w", batch[0].Position, batch[len(batch)-1].Position, err)
		}
		after = batch[len(batch)-1].Position
	}
}

// receive forwards a subscription's MediaMesh events to in until it drops or quit
// closes.
func (s *Store) receive(sub *kurrent.Subscription, after int64, in chan<- received, quit <-chan struct{}) {
	send := func(r received) bool {
		select {
		case in <- r:
			return true
		case <-quit:
			return false
		}
	}
	for {
		se := sub.Recv()
		switch {
		case se.SubscriptionDropped != nil:
			err := se.SubscriptionDropped.Error
			if err == nil {
				err = errors.New("subscription dropped")
			}
			send(received{err: err})
			return
		case se.EventAppeared != nil:
			rec := se.EventAppeared.OriginalEvent()
			if isSystem(rec) || position(rec.Position) <= after {
				continue
			}
			e, err := toEnvelope(rec)
			if !send(received{event: e, err: err}) || err != nil {
				return
			}
			after = e.Position
		}
	}
}
