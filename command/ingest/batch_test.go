package ingest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/mediamesh/mediamesh/command/feed"
	"github.com/mediamesh/mediamesh/command/ingest"
	"github.com/mediamesh/mediamesh/events"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
)

// TestIngestOneProgramSeveralTimesInAFeed: items of one external id travel in one
// message (their bucket's) and are applied in feed order, each seeing the one
// before (a round each), while the other items of the message go in one
// transaction; an item the aggregate refuses fails alone.
func TestIngestOneProgramSeveralTimesInAFeed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{})
	e.startWorker(t)
	progs := catalog(40, 1)
	same := func(title string, eps ...feed.Episode) feed.Program {
		return feed.Program{ExternalID: "acme:same", Title: title, Category: "news", Language: "en", Episodes: eps}
	}
	ep := func(n int) feed.Episode {
		return feed.Episode{ExternalID: "acme:same:ep", Title: "Pilot", Number: n, DurationSeconds: 60}
	}
	// One, Two (adds its episode), Three (renumbers it), Four (number 0: refused).
	feedProgs := append([]feed.Program{same("One")}, progs[:20]...)
	feedProgs = append(feedProgs, same("Two", ep(1)))
	feedProgs = append(feedProgs, progs[20:]...)
	feedProgs = append(feedProgs, same("Three", ep(2)), same("Four", ep(0)))
	body, _ := encodeNDJSON(t, feedProgs, nil)
	j := e.waitJob(t, e.submit(t, "application/x-ndjson", body), done)
	if j.Total != 44 || j.Succeeded != 43 || j.Failed != 1 || len(j.Errors) != 1 || j.Errors[0].ExternalID != "acme:same" {
		t.Fatalf("job %s %+v", summary(j), j.Errors)
	}
	counts := e.eventCounts(t)
	want := expectedCounts(progs)
	want[events.TypeProgramCreated]++
	want[events.TypeProgramExternalIDRegistered]++
	want[events.TypeProgramUpdated] += 2 // Two, Three
	want[events.TypeEpisodeAdded]++
	want[events.TypeEpisodeRegistered]++
	want[events.TypeEpisodeUpdated]++ // number 1 → 2
	for typ, n := range want {
		if counts[typ] != n {
			t.Errorf("%s: %d events, want %d (all %v)", typ, counts[typ], n, counts)
		}
	}
	var title string
	err := e.pool.QueryRow(context.Background(), `SELECT data->>'title' FROM eventstore_events
		WHERE type = $1 AND data->>'title' IS NOT NULL ORDER BY position DESC LIMIT 1`, events.TypeProgramUpdated).Scan(&title)
	if err != nil || title != "Three" {
		t.Fatalf("last title %q (%v), want Three: the items were not applied in feed order", title, err)
	}
}

// failingMany fails the first AppendMany calls (as a concurrent writer's conflict
// would) and then writes through the PostgreSQL store.
type failingMany struct {
	*pgstore.Store
	left atomic.Int32
}

func (s *failingMany) AppendMany(ctx context.Context, parts []events.StreamAppend) ([]events.AppendResult, error) {
	if s.left.Add(-1) >= 0 {
		return nil, fmt.Errorf("append many: %w", events.ErrVersionConflict)
	}
	return s.Store.AppendMany(ctx, parts)
}

// TestIngestGroupFallsBackToOneByOne: when a round's transaction fails, nothing
// of it was written and its items are applied one by one, each with its own
// retries: the feed lands as a clean run does.
func TestIngestGroupFallsBackToOneByOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{})
	store := &failingMany{Store: e.store}
	store.left.Store(3)
	sub, err := newSubscriber(e)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ingest.NewWorker(e.jobs, sub, store, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = w.Run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped; _ = sub.Close() })
	progs := catalog(60, 2)
	body, ex := encodeNDJSON(t, progs, nil)
	j := e.waitJob(t, e.submit(t, "application/x-ndjson", body), done)
	if j.Status != ingest.StatusCompleted || j.Succeeded != ex.total {
		t.Fatalf("job %s", summary(j))
	}
	if store.left.Load() >= 0 {
		t.Fatalf("only %d of 3 injected failures were met", 3-store.left.Load())
	}
	got, want := e.eventCounts(t), expectedCounts(progs)
	for typ, n := range want {
		if got[typ] != n {
			t.Errorf("%s: %d events, want %d", typ, got[typ], n)
		}
	}
}
