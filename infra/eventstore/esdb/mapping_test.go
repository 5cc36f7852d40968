package esdb

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	kurrent "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/events"
)

// These tests need no server: they pin the mapping between the port and the
// client's types that the conformance suite (run against a server) relies on.

func TestExpectedRevision(t *testing.T) {
	tests := []struct {
		expected int64
		want     kurrent.ExpectedRevision
		wantErr  bool
	}{
		{events.ExpectAny, kurrent.Any{}, false},
		{events.ExpectNoStream, kurrent.NoStream{}, false},
		{1, kurrent.StreamRevision{Value: 0}, false},
		{42, kurrent.StreamRevision{Value: 41}, false},
		{-2, nil, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.expected), func(t *testing.T) {
			got, err := expectedRevision(tc.expected)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("expectedRevision(%d) = %#v, %v; want %#v, error %v", tc.expected, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	in := []events.Envelope{
		{
			EventID:    uuid.NewString(),
			Type:       "mediamesh.program.created.v1",
			OccurredAt: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("CEST", 7200)),
			Metadata:   events.Metadata{CorrelationID: "c", CausationID: "k", Actor: "a", TraceParent: "tp", TraceState: "ts"},
			Data:       json.RawMessage(`{"b":  1, "a":2}`),
		},
		{Type: "mediamesh.program.published.v1"}, // generated id and time, no data
	}
	data, ids, err := toEventData("program-1", in)
	if err != nil {
		t.Fatalf("toEventData: %v", err)
	}
	if ids[0] != in[0].EventID || data[1].EventID.Version() != 7 || ids[1] != data[1].EventID.String() {
		t.Fatalf("ids = %v, event ids %v %v", ids, data[0].EventID, data[1].EventID)
	}
	var meta map[string]any
	if err := json.Unmarshal(data[0].Metadata, &meta); err != nil || meta["$correlationId"] != "c" || meta["$causationId"] != "k" {
		t.Fatalf("custom metadata %s lacks the server's correlation keys (%v)", data[0].Metadata, err)
	}
	for i, d := range data {
		rec := &kurrent.RecordedEvent{
			EventID: d.EventID, EventType: d.EventType, StreamID: "program-1", EventNumber: uint64(i),
			Position: kurrent.Position{Commit: 1000 + uint64(i), Prepare: 1000 + uint64(i)},
			Data:     d.Data, UserMetadata: d.Metadata, CreatedDate: time.Now(),
		}
		got, err := toEnvelope(rec)
		if err != nil {
			t.Fatalf("toEnvelope: %v", err)
		}
		if got.EventID != ids[i] || got.Type != in[i].Type || got.StreamID != "program-1" || got.Version != int64(i+1) || got.Position != int64(1000+i) {
			t.Errorf("envelope %d = %+v", i, got)
		}
		if got.Metadata != in[i].Metadata || string(got.Data) != string(in[i].Data) || (got.Data == nil) != (in[i].Data == nil) {
			t.Errorf("envelope %d metadata/data = %+v %q, want %+v %q", i, got.Metadata, got.Data, in[i].Metadata, in[i].Data)
		}
		if got.OccurredAt.Location() != time.UTC || got.OccurredAt.IsZero() {
			t.Errorf("envelope %d occurred at %v, want a UTC time", i, got.OccurredAt)
		}
	}
	if got, _ := toEnvelope(&kurrent.RecordedEvent{UserMetadata: data[0].Metadata}); !got.OccurredAt.Equal(in[0].OccurredAt.Truncate(time.Microsecond)) {
		t.Errorf("occurred at = %v, want %v", got.OccurredAt, in[0].OccurredAt.Truncate(time.Microsecond))
	}
}

func TestToEventDataRejects(t *testing.T) {
	id := uuid.NewString()
	tests := []struct {
		name   string
		stream string
		evs    []events.Envelope
	}{
		{"no events", "s", nil},
		{"empty stream", "", []events.Envelope{{Type: "t"}}},
		{"system stream", "$s", []events.Envelope{{Type: "t"}}},
		{"bad id", "s", []events.Envelope{{EventID: "x", Type: "t"}}},
		{"empty type", "s", []events.Envelope{{}}},
		{"system type", "s", []events.Envelope{{Type: "$t"}}},
		{"duplicate id", "s", []events.Envelope{{EventID: id, Type: "t"}, {EventID: id, Type: "t"}}},
		{"data not json", "s", []events.Envelope{{Type: "t", Data: json.RawMessage(`{"a":`)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := toEventData(tc.stream, tc.evs); err == nil {
				t.Fatalf("toEventData accepted %s", tc.name)
			}
		})
	}
}

func TestPositionsAndSystemEvents(t *testing.T) {
	if p := position(kurrent.Position{Commit: math.MaxUint64, Prepare: math.MaxUint64}); p != 0 {
		t.Errorf("no position mapped to %d, want 0", p)
	}
	if p := position(kurrent.Position{Commit: 4242, Prepare: 4242}); p != 4242 {
		t.Errorf("position 4242 mapped to %d", p)
	}
	if _, ok := fromPosition(0).(kurrent.Start); !ok {
		t.Errorf("reading after 0 does not start at the beginning")
	}
	if got := fromPosition(77); got != (kurrent.Position{Commit: 77, Prepare: 77}) {
		t.Errorf("reading after 77 starts at %#v", got)
	}
	for rec, want := range map[*kurrent.RecordedEvent]bool{
		{StreamID: "$stats-127.0.0.1:2113", EventType: "$statsCollected"}:  true,
		{StreamID: "$$program-1", EventType: "$metadata"}:                  true,
		{StreamID: MarkerStreamPrefix + "x", EventType: MarkerEventType}:   true,
		{StreamID: "program-1", EventType: "mediamesh.program.created.v1"}: false,
	} {
		if got := isSystem(rec); got != want {
			t.Errorf("isSystem(%s, %s) = %v, want %v", rec.StreamID, rec.EventType, got, want)
		}
	}
}
