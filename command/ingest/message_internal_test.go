package ingest

import (
	"reflect"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mediamesh/mediamesh/command/feed"
)

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	desc, season, pub := "About", 2, true
	it := feed.Item{Index: 7, Line: 9, ExternalID: "x", Program: feed.Program{
		ExternalID: "x", Title: "T", Description: &desc, Category: "news", Language: "en", Published: &pub,
		Episodes: []feed.Episode{{ExternalID: "e", Title: "E", Number: 1, Season: &season, DurationSeconds: 60}},
	}}
	const job = "01a2149f-a163-75c3-96d0-4d4c65804f1e"
	m, err := newMessage(job, "bot", it)
	if err != nil {
		t.Fatal(err)
	}
	if m.Metadata.Get(PartitionKeyMetadata) != "x" || m.Metadata.Get(MessageTypeMetadata) != MessageType {
		t.Fatalf("metadata %v", m.Metadata)
	}
	again, _ := newMessage(job, "bot", it)
	if again.UUID != m.UUID {
		t.Fatal("a message's id must derive from (job, index)")
	}
	im, err := decodeMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if im.JobID != job || im.Index != 7 || im.Line != 9 || im.Actor != "bot" || !reflect.DeepEqual(im.Program, it.Program) {
		t.Fatalf("decoded %+v", im)
	}
	cmd := im.command(m.UUID)
	if cmd.JobID != job || cmd.Item != 7 || cmd.Meta.Actor != "bot" || cmd.Meta.CorrelationID != job || *cmd.Episodes[0].Season != 2 || *cmd.Description != "About" {
		t.Fatalf("command %+v", cmd)
	}
}

func TestDecodeMessageRefusesPoison(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, payload, typ string
	}{
		{"not JSON", "nope", ""},
		{"no job", `{"index":1}`, ""},
		{"negative index", `{"job_id":"01a2149f-a163-75c3-96d0-4d4c65804f1e","index":-1}`, ""},
		{"other type", `{"job_id":"01a2149f-a163-75c3-96d0-4d4c65804f1e","index":1}`, "mediamesh.ingest.item.v9"},
	}
	for _, tc := range tests {
		m := message.NewMessage("m", []byte(tc.payload))
		if tc.typ != "" {
			m.Metadata.Set(MessageTypeMetadata, tc.typ)
		}
		if _, err := decodeMessage(m); err == nil {
			t.Errorf("%s: decoded", tc.name)
		}
	}
}
