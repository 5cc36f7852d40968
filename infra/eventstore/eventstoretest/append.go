package eventstoretest

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/events"
)

func newID(t testing.TB) string {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatalf("new uuid: %v", err)
	}
	return id.String()
}

func testRoundTrip(t *testing.T, s Store) {
	stream := StreamName(t, "roundtrip")
	cest := time.FixedZone("CEST", 2*60*60)
	evs := []events.Envelope{
		{
			EventID:    newID(t),
			Type:       "mediamesh.test.created.v1",
			OccurredAt: time.Date(2024, 5, 6, 7, 8, 9, 123456789, cest),
			Metadata: events.Metadata{
				CorrelationID: "corr-1", CausationID: "cause-1", Actor: "editor@example.com",
				TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "mm=1",
			},
			// Odd spacing and key order: the store must keep the bytes, not re-encode them.
			Data: json.RawMessage(`{"title":  "Ça va",  "b":2, "a":[1, 2.50]}`),
		},
		{
			EventID:    newID(t),
			Type:       "mediamesh.test.updated.v1",
			OccurredAt: time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC),
			Data:       json.RawMessage(`"just a string"`),
		},
		{
			EventID:    newID(t),
			Type:       "mediamesh.test.flagged.v1",
			OccurredAt: time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC),
			Data:       nil, // no payload
		},
	}
	before := mustHead(t, s)
	res := mustAppend(t, s, stream, events.ExpectNoStream, evs)
	if res.StreamID != stream || res.FirstVersion != 1 || res.LastVersion != 3 || res.Position <= 0 {
		t.Fatalf("append result = %+v, want stream %s, versions 1..3, position > 0", res, stream)
	}

	got := mustRead(t, s, stream)
	if len(got) != len(evs) {
		t.Fatalf("read %d events, want %d", len(got), len(evs))
	}
	for i := range got {
		assertSameEvent(t, got[i], evs[i], stream, int64(i+1))
		if i > 0 && got[i].Position <= got[i-1].Position {
			t.Errorf("position of version %d = %d, not above version %d's %d", i+1, got[i].Position, i, got[i-1].Position)
		}
	}
	if last := got[len(got)-1].Position; last != res.Position {
		t.Errorf("append result position = %d, last event's position = %d", res.Position, last)
	}

	// The global log carries the same events, with the same positions.
	waitReadable(t, s, res.Position)
	all := readMine(t, s, before, 100, len(evs), stream)
	for i := range all {
		assertSameEvent(t, all[i], evs[i], stream, int64(i+1))
		if all[i].Position != got[i].Position {
			t.Errorf("read all position of version %d = %d, read stream says %d", i+1, all[i].Position, got[i].Position)
		}
	}

	// An exact expected version continues the stream.
	more := NewEvents(t, 2, "mediamesh.test.more.v1")
	res2 := mustAppend(t, s, stream, 3, more)
	if res2.StreamID != stream || res2.FirstVersion != 4 || res2.LastVersion != 5 || res2.Position <= res.Position {
		t.Fatalf("second append result = %+v, want versions 4..5 and a position above %d", res2, res.Position)
	}
	got = mustRead(t, s, stream)
	if len(got) != 5 {
		t.Fatalf("read %d events after the second append, want 5", len(got))
	}
	for i, e := range got[3:] {
		assertSameEvent(t, e, more[i], stream, int64(4+i))
	}
}

func testGeneratedFields(t *testing.T, s Store) {
	stream := StreamName(t, "generated")
	before := time.Now().Add(-time.Second)
	evs := []events.Envelope{{Type: "mediamesh.test.generated.v1", Data: json.RawMessage(`{}`)}}
	mustAppend(t, s, stream, events.ExpectNoStream, evs)
	got := mustRead(t, s, stream)
	if len(got) != 1 {
		t.Fatalf("read %d events, want 1", len(got))
	}
	id, err := uuid.Parse(got[0].EventID)
	if err != nil || id.Version() != 7 {
		t.Errorf("generated event id %q: want a UUIDv7 (parse error %v)", got[0].EventID, err)
	}
	if at := got[0].OccurredAt; at.Before(before.Truncate(time.Microsecond)) || at.After(time.Now().Add(time.Second)) || at.Location() != time.UTC {
		t.Errorf("zero occurred at became %v, want the append time in UTC", at)
	}
}

func testConflicts(t *testing.T, s Store) {
	tests := []struct {
		name     string
		existing int
		expected int64
	}{
		{"stale exact version", 2, 1},
		{"exact version ahead of the stream", 2, 3},
		{"no stream on an existing stream", 2, events.ExpectNoStream},
		{"exact version on a missing stream", 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream := StreamName(t, "conflict")
			if tc.existing > 0 {
				mustAppend(t, s, stream, events.ExpectNoStream, NewEvents(t, tc.existing, "mediamesh.test.setup.v1"))
			}
			rejected := NewEvents(t, 2, "mediamesh.test.rejected.v1")
			_, err := s.Append(testContext(t), stream, tc.expected, rejected)
			if !errors.Is(err, events.ErrVersionConflict) {
				t.Fatalf("append with expected version %d to a stream of %d events: err = %v, want ErrVersionConflict", tc.expected, tc.existing, err)
			}
			got, err := s.ReadStream(testContext(t), stream)
			switch {
			case tc.existing == 0 && !errors.Is(err, events.ErrStreamNotFound):
				t.Fatalf("read stream after a rejected append to a missing stream: err = %v, want ErrStreamNotFound", err)
			case tc.existing > 0 && err != nil:
				t.Fatalf("read stream: %v", err)
			case len(got) != tc.existing:
				t.Fatalf("stream has %d events after a rejected append, want %d", len(got), tc.existing)
			}
			// Nothing of the rejected batch was kept, not even as an idempotency
			// record: the same event ids append as new events at the right version.
			res := mustAppend(t, s, stream, int64(tc.existing), rejected)
			if res.FirstVersion != int64(tc.existing+1) || res.LastVersion != int64(tc.existing+2) {
				t.Fatalf("append of the once rejected events = %+v, want versions %d..%d", res, tc.existing+1, tc.existing+2)
			}
			if got := mustRead(t, s, stream); len(got) != tc.existing+2 {
				t.Fatalf("stream has %d events, want %d", len(got), tc.existing+2)
			}
		})
	}
}

func testExpectAny(t *testing.T, s Store) {
	stream := StreamName(t, "any")
	r1 := mustAppend(t, s, stream, events.ExpectAny, NewEvents(t, 2, "mediamesh.test.any.v1"))
	r2 := mustAppend(t, s, stream, events.ExpectAny, NewEvents(t, 1, "mediamesh.test.any.v1"))
	if r1.FirstVersion != 1 || r1.LastVersion != 2 || r2.FirstVersion != 3 || r2.LastVersion != 3 {
		t.Fatalf("ExpectAny results = %+v then %+v, want versions 1..2 then 3", r1, r2)
	}
	if r2.Position <= r1.Position {
		t.Fatalf("second append position %d is not above the first's %d", r2.Position, r1.Position)
	}
	if got := mustRead(t, s, stream); len(got) != 3 {
		t.Fatalf("stream has %d events, want 3", len(got))
	}
}

func testConcurrentAppends(t *testing.T, s Store) {
	stream := StreamName(t, "race")
	const writers = 6
	for round, expected := range []int64{events.ExpectNoStream, 1} {
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for i := range writers {
			batch := NewEvents(t, 1, "mediamesh.test.race.v1")
			wg.Go(func() {
				_, errs[i] = s.Append(testContext(t), stream, expected, batch)
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, events.ErrVersionConflict):
				t.Fatalf("round %d: concurrent append failed with %v, want success or ErrVersionConflict", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of %d concurrent appends at expected version %d succeeded, want exactly 1", round, won, writers, expected)
		}
	}
	if got := mustRead(t, s, stream); len(got) != 2 {
		t.Fatalf("stream has %d events after two rounds, want 2", len(got))
	}
}

func testIdempotentRetry(t *testing.T, s Store) {
	stream := StreamName(t, "retry")
	other := StreamName(t, "retryother")
	batch := NewEvents(t, 3, "mediamesh.test.retry.v1")
	before := mustHead(t, s)
	orig := mustAppend(t, s, stream, events.ExpectNoStream, batch)
	// The stream moves on before the retry arrives.
	later := mustAppend(t, s, stream, 3, NewEvents(t, 1, "mediamesh.test.later.v1"))

	tests := []struct {
		name     string
		stream   string
		expected int64
	}{
		{"same request", stream, events.ExpectNoStream},
		{"expect any", stream, events.ExpectAny},
		{"stale exact version", stream, 2},
		{"current exact version", stream, later.LastVersion},
		{"another stream", other, events.ExpectNoStream},
		{"another stream, expect any", other, events.ExpectAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Append(testContext(t), tc.stream, tc.expected, batch)
			if err != nil {
				t.Fatalf("retry: %v, want the original result", err)
			}
			if res != orig {
				t.Fatalf("retry result = %+v, want the original %+v", res, orig)
			}
		})
	}
	if got := mustRead(t, s, stream); len(got) != 4 {
		t.Fatalf("stream has %d events after the retries, want 4", len(got))
	}
	if _, err := s.ReadStream(testContext(t), other); !errors.Is(err, events.ErrStreamNotFound) {
		t.Fatalf("retry naming another stream created it: read err = %v, want ErrStreamNotFound", err)
	}
	waitReadable(t, s, later.Position)
	if all := readMine(t, s, before, 100, 4, stream, other); len(all) != 4 {
		t.Fatalf("global log holds %d events of the streams, want 4", len(all))
	}
	// A single-event batch is recognised too.
	single := NewEvents(t, 1, "mediamesh.test.retry.v1")
	r1 := mustAppend(t, s, other, events.ExpectAny, single)
	if r2 := mustAppend(t, s, other, events.ExpectAny, single); r2 != r1 {
		t.Fatalf("single-event retry = %+v, want %+v", r2, r1)
	}
	if got := mustRead(t, s, other); len(got) != 1 {
		t.Fatalf("stream has %d events after a single-event retry, want 1", len(got))
	}
}

func testInvalidAppend(t *testing.T, s Store) {
	valid := func() []events.Envelope { return NewEvents(t, 1, "mediamesh.test.valid.v1") }
	dup := NewEvents(t, 2, "mediamesh.test.dup.v1")
	dup[1].EventID = dup[0].EventID
	tests := []struct {
		name     string
		stream   string
		expected int64
		evs      []events.Envelope
	}{
		{"no events", StreamName(t, "invalid"), events.ExpectAny, nil},
		{"empty stream id", "", events.ExpectAny, valid()},
		{"expected version below ExpectAny", StreamName(t, "invalid"), -2, valid()},
		{"event id not a uuid", StreamName(t, "invalid"), events.ExpectAny, []events.Envelope{{EventID: "not-a-uuid", Type: "mediamesh.test.bad.v1"}}},
		{"empty type", StreamName(t, "invalid"), events.ExpectAny, []events.Envelope{{EventID: newID(t)}}},
		{"duplicate event ids in one batch", StreamName(t, "invalid"), events.ExpectAny, dup},
		{"data not JSON", StreamName(t, "invalid"), events.ExpectAny, []events.Envelope{{EventID: newID(t), Type: "mediamesh.test.bad.v1", Data: json.RawMessage(`{"a":`)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Append(testContext(t), tc.stream, tc.expected, tc.evs); err == nil {
				t.Fatalf("append succeeded, want an error")
			}
			if tc.stream == "" {
				return
			}
			if _, err := s.ReadStream(testContext(t), tc.stream); !errors.Is(err, events.ErrStreamNotFound) {
				t.Fatalf("rejected append left the stream readable: err = %v, want ErrStreamNotFound", err)
			}
		})
	}
}

func testReadMissingStream(t *testing.T, s Store) {
	got, err := s.ReadStream(testContext(t), StreamName(t, "missing"))
	if !errors.Is(err, events.ErrStreamNotFound) {
		t.Fatalf("read missing stream = %d events, err %v; want ErrStreamNotFound", len(got), err)
	}
}
