package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

func manyEnvs(n int) []events.Envelope {
	out := make([]events.Envelope, n)
	for i := range out {
		out[i] = events.Envelope{EventID: uuid.NewString(), Type: "test.many.v1", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}
	}
	return out
}

func streamLen(t *testing.T, s *postgres.Store, stream string) int {
	t.Helper()
	evs, err := s.ReadStream(context.Background(), stream)
	if errors.Is(err, events.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// TestAppendMany: several streams in one transaction, all or nothing, with
// Append's expected-version and idempotency rules per part.
func TestAppendMany(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	s := postgres.New(pool)
	ctx := context.Background()
	if _, err := s.Append(ctx, "existing", events.ExpectNoStream, manyEnvs(2)); err != nil {
		t.Fatal(err)
	}

	t.Run("writes every part, in one transaction, positions unique and ordered", func(t *testing.T) {
		parts := []events.StreamAppend{
			{StreamID: "a1", ExpectedVersion: events.ExpectNoStream, Events: manyEnvs(1)},
			{StreamID: "b1", ExpectedVersion: events.ExpectAny, Events: manyEnvs(3)},
			{StreamID: "existing", ExpectedVersion: 2, Events: manyEnvs(2)},
		}
		res, err := s.AppendMany(ctx, parts)
		if err != nil {
			t.Fatal(err)
		}
		want := []struct{ first, last int64 }{{1, 1}, {1, 3}, {3, 4}}
		var positions []int64
		for i, r := range res {
			if r.StreamID != parts[i].StreamID || r.FirstVersion != want[i].first || r.LastVersion != want[i].last {
				t.Fatalf("result %d = %+v, want versions %v", i, r, want[i])
			}
			evs, err := s.ReadStream(ctx, r.StreamID)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs[len(evs)-len(parts[i].Events):] {
				positions = append(positions, e.Position)
			}
			if last := evs[len(evs)-1].Position; last != r.Position {
				t.Fatalf("result %d position %d, stream's last %d", i, r.Position, last)
			}
		}
		for i := 1; i < len(positions); i++ {
			if positions[i] <= positions[i-1] || positions[i]>>20 != positions[0]>>20 {
				t.Fatalf("positions %v: want increasing, one transaction", positions)
			}
		}
		// Retrying the same parts is a no-op with the original results.
		again, err := s.AppendMany(ctx, parts)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		for i := range res {
			if again[i] != res[i] {
				t.Fatalf("retry result %d = %+v, want %+v", i, again[i], res[i])
			}
		}
		if n := streamLen(t, s, "b1"); n != 3 {
			t.Fatalf("b1 has %d events after the retry", n)
		}
	})

	refusals := []struct {
		name  string
		parts func() []events.StreamAppend
		want  error // nil: any error
	}{
		{"a stale part writes nothing", func() []events.StreamAppend {
			return []events.StreamAppend{
				{StreamID: "c1", ExpectedVersion: events.ExpectNoStream, Events: manyEnvs(1)},
				{StreamID: "existing", ExpectedVersion: 1, Events: manyEnvs(1)},
			}
		}, events.ErrVersionConflict},
		{"an existing stream with ExpectNoStream writes nothing", func() []events.StreamAppend {
			return []events.StreamAppend{
				{StreamID: "c2", ExpectedVersion: events.ExpectNoStream, Events: manyEnvs(1)},
				{StreamID: "a1", ExpectedVersion: events.ExpectNoStream, Events: manyEnvs(1)},
			}
		}, events.ErrVersionConflict},
		{"a stored event id in a new batch writes nothing", func() []events.StreamAppend {
			stored, err := s.ReadStream(ctx, "existing")
			if err != nil {
				t.Fatal(err)
			}
			reused := manyEnvs(1)
			reused[0].EventID = stored[0].EventID
			return []events.StreamAppend{
				{StreamID: "c3", ExpectedVersion: events.ExpectAny, Events: manyEnvs(1)},
				{StreamID: "c4", ExpectedVersion: events.ExpectAny, Events: reused},
			}
		}, nil},
		{"a stream twice", func() []events.StreamAppend {
			return []events.StreamAppend{
				{StreamID: "c5", ExpectedVersion: events.ExpectAny, Events: manyEnvs(1)},
				{StreamID: "c5", ExpectedVersion: events.ExpectAny, Events: manyEnvs(1)},
			}
		}, nil},
		{"an event id twice across parts", func() []events.StreamAppend {
			e := manyEnvs(1)
			return []events.StreamAppend{
				{StreamID: "c6", ExpectedVersion: events.ExpectAny, Events: e},
				{StreamID: "c7", ExpectedVersion: events.ExpectAny, Events: e},
			}
		}, nil},
		{"an empty part", func() []events.StreamAppend {
			return []events.StreamAppend{
				{StreamID: "c8", ExpectedVersion: events.ExpectAny, Events: manyEnvs(1)},
				{StreamID: "c9", ExpectedVersion: events.ExpectAny},
			}
		}, nil},
		{"no parts", func() []events.StreamAppend { return nil }, nil},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			parts := tc.parts()
			res, err := s.AppendMany(ctx, parts)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || res != nil {
				t.Fatalf("AppendMany = %v, %v; want an error (%v)", res, err, tc.want)
			}
			for _, p := range parts {
				if p.StreamID == "existing" || p.StreamID == "a1" {
					continue
				}
				if n := streamLen(t, s, p.StreamID); n != 0 {
					t.Fatalf("stream %s has %d events after a refused AppendMany", p.StreamID, n)
				}
			}
		})
	}
	if n := streamLen(t, s, "existing"); n != 4 {
		t.Fatalf("existing has %d events, want 4", n)
	}
}

// TestAppendManyConcurrentClaims: many writers race to claim the same new streams
// with ExpectNoStream, each together with a stream of its own; exactly one wins
// each claim, and a loser's own stream is not written either.
func TestAppendManyConcurrentClaims(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 16)
	s := postgres.New(pool)
	ctx := context.Background()
	const writers, claims = 8, 20
	var wg sync.WaitGroup
	wins := make([]int, claims)
	var mu sync.Mutex
	errs := make(chan error, writers*claims)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range claims {
				own := fmt.Sprintf("own-%d-%d", w, c)
				_, err := s.AppendMany(ctx, []events.StreamAppend{
					{StreamID: fmt.Sprintf("claim-%d", c), ExpectedVersion: events.ExpectNoStream, Events: manyEnvs(1)},
					{StreamID: own, ExpectedVersion: events.ExpectNoStream, Events: manyEnvs(2)},
				})
				switch {
				case err == nil:
					mu.Lock()
					wins[c]++
					mu.Unlock()
				case !errors.Is(err, events.ErrVersionConflict):
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for c, n := range wins {
		if n != 1 {
			t.Fatalf("claim %d won %d times", c, n)
		}
	}
	var owns int
	if err := pool.QueryRow(ctx, `SELECT count(DISTINCT stream_id) FROM eventstore_events WHERE stream_id LIKE 'own-%'`).Scan(&owns); err != nil {
		t.Fatal(err)
	}
	if owns != claims {
		t.Fatalf("%d own streams written, want %d (one per winner)", owns, claims)
	}
}
