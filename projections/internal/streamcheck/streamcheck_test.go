package streamcheck_test

import (
	"testing"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/internal/streamcheck"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	const p = "0190d5a0-0000-7000-8000-000000000001"
	const e = "0190d5a0-0000-7000-8000-0000000000e1"
	onStream := func(s string, v int64) events.Envelope { return events.Envelope{StreamID: s, Version: v} }
	tests := []struct {
		name string
		env  events.Envelope
		ev   events.Event
		ok   bool
	}{
		{"program event on its stream", onStream("program-"+p, 1), events.ProgramCreated{ProgramID: p}, true},
		{"episode event on its program's stream", onStream("program-"+p, 3), events.EpisodePublished{ProgramID: p, EpisodeID: e}, true},
		{"pointer event passes", onStream("episode-"+e, 1), events.EpisodeRegistered{ProgramID: p, EpisodeID: e}, true},
		{"other stream", onStream("program-other", 1), events.ProgramPublished{ProgramID: p}, false},
		{"program id not a uuid", onStream("program-abc", 1), events.ProgramArchived{ProgramID: "abc"}, false},
		{"episode id not a uuid", onStream("program-"+p, 2), events.EpisodeAdded{ProgramID: p, EpisodeID: "e1"}, false},
		{"episode id missing", onStream("program-"+p, 2), events.EpisodeUpdated{ProgramID: p}, false},
		{"no version", onStream("program-"+p, 0), events.ProgramUpdated{ProgramID: p}, false},
	}
	for _, tc := range tests {
		if err := streamcheck.Check(tc.env, tc.ev); (err == nil) != tc.ok {
			t.Errorf("%s: Check = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestValidUUID(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"0190d5a0-0000-7000-8000-000000000001": true,
		"0190D5A0-0000-7000-8000-00000000000F": true,
		"0190d5a0-0000-7000-8000-00000000000g": false,
		"0190d5a000000-7000-8000-000000000001": false,
		"":                                     false,
	} {
		if got := streamcheck.ValidUUID(s); got != want {
			t.Errorf("ValidUUID(%q) = %v", s, got)
		}
	}
}
