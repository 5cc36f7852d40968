package events_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/mediamesh/mediamesh/events"
)

// TestGoldenEventsDecode decodes the stored shape of every event type in testdata/ and
// checks that nothing is lost: the decoded event encodes back to the same JSON. A
// renamed JSON field or a changed type breaks this test instead of stored events.
func TestGoldenEventsDecode(t *testing.T) {
	t.Parallel()
	codec := events.NewCodec()
	for _, typ := range codec.Types() {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(filepath.Join("testdata", typ+".json"))
			if err != nil {
				t.Fatalf("every event type needs a golden file: %v", err)
			}
			ev, err := codec.Decode(typ, raw)
			if err != nil {
				t.Fatalf("decode golden %s: %v", typ, err)
			}
			if ev.EventType() != typ {
				t.Fatalf("decoded %T reports type %q, want %q", ev, ev.EventType(), typ)
			}
			gotType, encoded, err := codec.Encode(ev)
			if err != nil || gotType != typ {
				t.Fatalf("encode: %q %v", gotType, err)
			}
			var want, got any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(encoded, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(want, got) {
				t.Fatalf("round trip lost data:\n golden  %s\n encoded %s", raw, encoded)
			}
		})
	}
}

// TestGoldenFilesHaveTypes makes sure no golden file is orphaned: a type that is
// removed from the codec while events of it are stored must fail here.
func TestGoldenFilesHaveTypes(t *testing.T) {
	t.Parallel()
	codec := events.NewCodec()
	known := map[string]bool{}
	for _, typ := range codec.Types() {
		known[typ] = true
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		typ := filepath.Base(f[:len(f)-len(".json")])
		if !known[typ] {
			t.Errorf("golden file %s has no decoder: stored events of that type would stop decoding", f)
		}
	}
}

func TestDecodeSpecificValues(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("testdata", events.TypeEpisodeUpdated+".json"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.NewCodec().Decode(events.TypeEpisodeUpdated, raw)
	if err != nil {
		t.Fatal(err)
	}
	up, ok := ev.(events.EpisodeUpdated)
	if !ok {
		t.Fatalf("decoded %T, want events.EpisodeUpdated", ev)
	}
	if up.Number == nil || *up.Number != 2 || up.Season == nil || *up.Season != 3 || up.DurationSeconds == nil || *up.DurationSeconds != 3600 {
		t.Fatalf("pointer fields lost: %+v", up)
	}
	if events.ProgramIDOf(up) != "0190d5a0-0000-7000-8000-000000000001" {
		t.Fatalf("ProgramIDOf = %q", events.ProgramIDOf(up))
	}
}

func TestUnknownTypeFails(t *testing.T) {
	t.Parallel()
	_, err := events.NewCodec().Decode("mediamesh.nope.v1", json.RawMessage(`{}`))
	if !errors.Is(err, events.ErrUnknownType) {
		t.Fatalf("err = %v, want ErrUnknownType", err)
	}
}

func TestUpcasterRunsBeforeDecode(t *testing.T) {
	t.Parallel()
	// A hypothetical v0 of "published" that called the id "program".
	codec := events.NewCodec().WithUpcaster("mediamesh.program.published.v0", func(data json.RawMessage) (string, json.RawMessage, error) {
		var old struct {
			Program string `json:"program"`
		}
		if err := json.Unmarshal(data, &old); err != nil {
			return "", nil, err
		}
		nd, err := json.Marshal(events.ProgramPublished{ProgramID: old.Program})
		return events.TypeProgramPublished, nd, err
	})
	ev, err := codec.Decode("mediamesh.program.published.v0", json.RawMessage(`{"program":"p1"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ev, (events.ProgramPublished{ProgramID: "p1"}); got != want {
		t.Fatalf("upcast = %+v, want %+v", got, want)
	}
}

func TestProgramExternalIDStreamID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, a, b string
		same       bool
	}{
		{"same id, same stream", "acme:42", "acme:42", true},
		{"case matters", "acme:42", "ACME:42", false},
		{"whitespace matters", "acme:42", "acme:42 ", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := events.ProgramExternalIDStreamID(tc.a), events.ProgramExternalIDStreamID(tc.b)
			if (a == b) != tc.same {
				t.Fatalf("stream(%q)=%s stream(%q)=%s, same=%v", tc.a, a, tc.b, b, tc.same)
			}
			if len(a) != len("programext-")+64 || a[:len("programext-")] != "programext-" {
				t.Fatalf("stream id %q, want programext- and 64 hex digits", a)
			}
		})
	}
	// The relay keys a pointer event by the program it names, beside that program's events.
	if id := events.ProgramIDOf(events.ProgramExternalIDRegistered{ExternalID: "x", ProgramID: "p"}); id != "p" {
		t.Fatalf("ProgramIDOf(pointer) = %q, want \"p\"", id)
	}
}

// TestEveryProgramEventHasItsProgramKey makes sure the relay can key every event of a
// program (and of its assets) by the program id, so they stay in order on one partition.
func TestEveryProgramEventHasItsProgramKey(t *testing.T) {
	t.Parallel()
	codec := events.NewCodec()
	for _, typ := range codec.Types() {
		raw, err := os.ReadFile(filepath.Join("testdata", typ+".json"))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := codec.Decode(typ, raw)
		if err != nil {
			t.Fatal(err)
		}
		var probe struct {
			ProgramID string `json:"program_id"`
		}
		_ = json.Unmarshal(raw, &probe)
		if probe.ProgramID != "" && events.ProgramIDOf(ev) != probe.ProgramID {
			t.Errorf("%s: ProgramIDOf = %q, want %q", typ, events.ProgramIDOf(ev), probe.ProgramID)
		}
	}
}
