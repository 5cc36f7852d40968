package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// TestReadStreams: several streams in one call, each oldest first as ReadStream
// returns it; a stream that does not exist is absent.
func TestReadStreams(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	s := postgres.New(pool)
	ctx := context.Background()
	for stream, n := range map[string]int{"r1": 3, "r2": 1, "other": 2} {
		if _, err := s.Append(ctx, stream, events.ExpectNoStream, manyEnvs(n)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ReadStreams(ctx, []string{"r1", "r2", "missing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got["r1"]) != 3 || len(got["r2"]) != 1 {
		t.Fatalf("ReadStreams = %v", got)
	}
	one, err := s.ReadStream(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got["r1"] {
		if e.EventID != one[i].EventID || e.Version != int64(i+1) || e.Position != one[i].Position {
			t.Fatalf("r1[%d] = %+v, ReadStream has %+v", i, e, one[i])
		}
	}
	if empty, err := s.ReadStreams(ctx, nil); err != nil || len(empty) != 0 {
		t.Fatalf("no streams: %v, %v", empty, err)
	}
	if _, err := s.ReadStreams(ctx, []string{""}); err == nil {
		t.Fatal("an empty stream id was read")
	}
}

// TestAppendManySetWise: many parts of every kind of expected version (written by
// one statement per kind) get their versions, and positions that follow the order
// of the parts, as if each part were appended in turn within the transaction; a
// stale part anywhere refuses them all.
func TestAppendManySetWise(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	s := postgres.New(pool)
	ctx := context.Background()
	var parts []events.StreamAppend
	for i := range 90 {
		stream := fmt.Sprintf("set-%02d", i)
		expected := []int64{events.ExpectNoStream, events.ExpectAny, 2}[i%3]
		if expected == 2 {
			if _, err := s.Append(ctx, stream, events.ExpectNoStream, manyEnvs(2)); err != nil {
				t.Fatal(err)
			}
		}
		parts = append(parts, events.StreamAppend{StreamID: stream, ExpectedVersion: expected, Events: manyEnvs(1 + i%2)})
	}
	res, err := s.AppendMany(ctx, parts)
	if err != nil {
		t.Fatal(err)
	}
	last := int64(0)
	for i, r := range res {
		n := int64(len(parts[i].Events))
		base := int64(0)
		if parts[i].ExpectedVersion == 2 {
			base = 2
		}
		if r.StreamID != parts[i].StreamID || r.FirstVersion != base+1 || r.LastVersion != base+n || r.Position <= last {
			t.Fatalf("part %d: %+v (previous position %d)", i, r, last)
		}
		last = r.Position
		evs, err := s.ReadStream(ctx, parts[i].StreamID)
		if err != nil || int64(len(evs)) != base+n || evs[len(evs)-1].Position != r.Position {
			t.Fatalf("stream %s: %d events, %v", parts[i].StreamID, len(evs), err)
		}
	}
	stale := []events.StreamAppend{
		{StreamID: "set-new-a", ExpectedVersion: events.ExpectNoStream, Events: manyEnvs(1)},
		{StreamID: "set-02", ExpectedVersion: 2, Events: manyEnvs(1)}, // at 3 now
		{StreamID: "set-new-b", ExpectedVersion: events.ExpectAny, Events: manyEnvs(1)},
	}
	if _, err := s.AppendMany(ctx, stale); !errors.Is(err, events.ErrVersionConflict) || !strings.Contains(err.Error(), "set-02") {
		t.Fatalf("a stale part: %v", err)
	}
	if streamLen(t, s, "set-new-a") != 0 || streamLen(t, s, "set-new-b") != 0 {
		t.Fatal("a refused AppendMany wrote some of its parts")
	}
}
