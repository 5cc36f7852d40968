package relay_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/relay"
)

func TestPartitionKey(t *testing.T) {
	t.Parallel()
	codec := events.NewCodec()
	enc := func(ev events.Event, stream string) events.Envelope {
		typ, data, err := codec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		return events.Envelope{Type: typ, Data: data, StreamID: stream}
	}
	tests := []struct {
		name string
		env  events.Envelope
		want string
	}{
		{"program event", enc(events.ProgramPublished{ProgramID: "p1"}, "program-p1"), "p1"},
		{"episode event on the program stream", enc(events.EpisodeAdded{ProgramID: "p1", EpisodeID: "e1"}, "program-p1"), "p1"},
		{"episode pointer stream", enc(events.EpisodeRegistered{ProgramID: "p1", EpisodeID: "e1"}, "episode-e1"), "p1"},
		{"asset of a program", events.Envelope{Type: "mediamesh.asset.uploaded.v1", Data: json.RawMessage(`{"program_id":"p1"}`), StreamID: "asset-a1"}, "p1"},
		{"unknown type", events.Envelope{Type: "mediamesh.future.thing.v1", Data: json.RawMessage(`{"program_id":"p1"}`), StreamID: "future-f1"}, "future-f1"},
		{"undecodable data", events.Envelope{Type: events.TypeProgramPublished, Data: json.RawMessage(`[`), StreamID: "program-p2"}, "program-p2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := relay.PartitionKey(codec, tt.env); got != tt.want {
				t.Fatalf("PartitionKey = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  events.Envelope
		want map[string]string
	}{
		{
			name: "with trace context",
			env: events.Envelope{
				EventID: "0190a6f2-0000-7000-8000-000000000001", Type: events.TypeProgramPublished, StreamID: "program-p1",
				Version: 3, Position: 1<<20 | 2, OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
				Metadata: events.Metadata{Actor: "editor", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceState: "mm=1"},
				Data:     json.RawMessage(`{"program_id":"p1"}`),
			},
			want: map[string]string{
				relay.MetaEventID: "0190a6f2-0000-7000-8000-000000000001", relay.MetaEventType: events.TypeProgramPublished,
				relay.MetaStreamID: "program-p1", relay.MetaStreamVersion: "3", relay.MetaPosition: "1048578",
				relay.MetaPartitionKey: "p1", relay.MetaTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
				relay.MetaTraceState: "mm=1",
			},
		},
		{
			name: "without trace context",
			env: events.Envelope{
				EventID: "0190a6f2-0000-7000-8000-000000000002", Type: events.TypeProgramCreated, StreamID: "program-p1",
				Version: 1, Position: 7, OccurredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Data: json.RawMessage(`{"program_id":"p1"}`),
			},
			want: map[string]string{
				relay.MetaEventID: "0190a6f2-0000-7000-8000-000000000002", relay.MetaEventType: events.TypeProgramCreated,
				relay.MetaStreamID: "program-p1", relay.MetaStreamVersion: "1", relay.MetaPosition: "7", relay.MetaPartitionKey: "p1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := relay.NewMessage(tt.env, "p1")
			if err != nil {
				t.Fatal(err)
			}
			if m.UUID != tt.env.EventID {
				t.Errorf("message UUID %q, want the event id", m.UUID)
			}
			if got := map[string]string(m.Metadata); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("metadata %v, want %v", got, tt.want)
			}
			back, err := relay.DecodeMessage(m)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tt.env) {
				t.Errorf("round trip: %+v, want %+v", back, tt.env)
			}
		})
	}
}

func TestDecodeMessageRejectsForeignPayloads(t *testing.T) {
	t.Parallel()
	for _, payload := range []string{``, `not json`, `{}`, `{"event_id":"x","type":"t"}`} {
		_, err := relay.DecodeMessage(message.NewMessage("m", []byte(payload)))
		if !errors.Is(err, relay.ErrBadMessage) {
			t.Errorf("DecodeMessage(%q) = %v, want ErrBadMessage", payload, err)
		}
	}
}
