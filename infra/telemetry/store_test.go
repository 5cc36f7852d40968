package telemetry_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/events"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/infra/telemetry"
)

// singleStore hides the PostgreSQL store's AppendMany and ReadStreams.
type singleStore struct{ telemetry.Store }

// TestInstrumentStoreForwardsAppendMany: the wrapper appends to several streams
// when its store can, timing each AppendMany by result, and reads several streams
// (in one call or one by one); over a store without AppendMany it has none.
func TestInstrumentStoreForwardsAppendMany(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewDB(t)
	m := telemetry.NewMetrics()
	store := telemetry.InstrumentStore(pgstore.New(pool), m, nil)
	multi, ok := store.(app.MultiStreamAppender)
	if !ok {
		t.Fatal("the instrumented PostgreSQL store has no AppendMany")
	}
	env := func() []events.Envelope {
		return []events.Envelope{{EventID: uuid.NewString(), Type: "test.many.v1", Data: []byte(`{}`)}}
	}
	parts := func() []events.StreamAppend {
		return []events.StreamAppend{
			{StreamID: "s1", ExpectedVersion: events.ExpectNoStream, Events: env()},
			{StreamID: "s2", ExpectedVersion: events.ExpectNoStream, Events: env()},
		}
	}
	res, err := multi.AppendMany(ctx, parts())
	if err != nil || len(res) != 2 || res[1].StreamID != "s2" || res[1].LastVersion != 1 {
		t.Fatalf("AppendMany = %+v, %v", res, err)
	}
	if _, err := multi.AppendMany(ctx, parts()); !errors.Is(err, events.ErrVersionConflict) {
		t.Fatalf("a stale AppendMany: %v", err)
	}
	fams := scrape(t, m)
	counts := map[string]uint64{}
	for _, mt := range fams["mediamesh_eventstore_append_duration_seconds"].GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "result" {
				counts[l.GetValue()] = mt.GetHistogram().GetSampleCount()
			}
		}
	}
	if counts["ok"] != 1 || counts["conflict"] != 1 {
		t.Fatalf("append observations %v, want one ok and one conflict", counts)
	}

	for _, s := range []telemetry.Store{store, telemetry.InstrumentStore(singleStore{pgstore.New(pool)}, m, nil)} {
		r, ok := s.(app.MultiStreamReader)
		if !ok {
			t.Fatalf("%T has no ReadStreams", s)
		}
		got, err := r.ReadStreams(ctx, []string{"s1", "s2", "missing"})
		if err != nil || len(got) != 2 || len(got["s1"]) != 1 || len(got["s2"]) != 1 {
			t.Fatalf("%T ReadStreams = %v, %v", s, got, err)
		}
	}
	if _, ok := telemetry.InstrumentStore(singleStore{pgstore.New(pool)}, m, nil).(app.MultiStreamAppender); ok {
		t.Fatal("a store without AppendMany gained one")
	}
}
