package opscli_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/command/app"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/opscli"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	"github.com/mediamesh/mediamesh/infra/redis/redistest"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/documents"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// TestRebuildMovesRedisDocumentsToTheNewKeySpace rebuilds a catalog that writes
// Redis documents: the new version's key space holds the same documents as the
// old one's when it takes over, and the old key space is deleted after the grace
// period.
func TestRebuildMovesRedisDocumentsToTheNewKeySpace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewDB(t)
	rc := redistest.Client(t)
	ns := redistest.Namespace(t, rc)
	keyspace := func(v int) mmredis.Keyspace { return mmredis.CatalogKeyspace(v).WithNamespace(ns) }
	quiet := slog.New(slog.DiscardHandler)
	sink, err := opscli.NewDocumentsSink(pool, rc, keyspace, 0, documents.Options{Logger: quiet, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	def, err := rebuild.Rebuildable(pool, catalog.New(nil, catalog.WithDocuments()), []string{catalog.OutboxTable}, sink)
	if err != nil {
		t.Fatal(err)
	}
	store := pgstore.New(pool)
	h := app.NewHandlers(store)
	for i := range 12 {
		res, err := h.CreateProgram.Handle(ctx, app.CreateProgram{Title: fmt.Sprintf("P%d", i), Category: "news", Language: "en"})
		if err != nil {
			t.Fatal(err)
		}
		ep, err := h.AddEpisode.Handle(ctx, app.AddEpisode{ProgramID: res.ID, Title: "E", Number: 1, DurationSeconds: 60})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.PublishEpisode.Handle(ctx, app.PublishEpisode{EpisodeID: ep.ID}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.PublishProgram.Handle(ctx, app.PublishProgram{ProgramID: res.ID}); err != nil {
			t.Fatal(err)
		}
	}
	head, err := store.HeadPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rebuild.New(pool, store, []rebuild.Definition{def}, rebuild.Options{
		Runtime: runtime.Options{BatchWait: 5 * time.Millisecond}, Grace: 500 * time.Millisecond,
		Poll: 50 * time.Millisecond, ProgressEvery: 20 * time.Millisecond, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(mctx) }()
	t.Cleanup(func() { cancel(); <-done })

	position := func(v int) int64 {
		st, err := mmredis.NewDocuments(rc, keyspace(v), 0)
		if err != nil {
			t.Fatal(err)
		}
		pos, _, err := st.Position(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return pos
	}
	waitUntil(t, "version 1's documents", func() bool { return position(1) >= head })
	docs := func(v int) map[string]string {
		prefix := keyspace(v).Base() + ":"
		out := map[string]string{}
		for k, val := range redistest.Dump(t, rc, prefix) {
			if rest := strings.TrimPrefix(k, prefix); strings.HasPrefix(rest, "program:") || strings.HasPrefix(rest, "episode:") {
				out[rest] = val
			}
		}
		return out
	}
	before := docs(1)
	if len(before) != 12*3 { // program, its episode list, its episode
		t.Fatalf("version 1 has %d documents", len(before))
	}
	if _, err := m.StartRebuild(ctx, catalog.Name); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the switch", func() bool {
		p, err := m.Progress(ctx, catalog.Name)
		return err == nil && p.Status == rebuild.RebuildCompleted
	})
	if position(2) < head {
		t.Errorf("version 2's Redis position %d is behind the head %d at the switch", position(2), head)
	}
	after := docs(2)
	if len(after) != len(before) {
		t.Errorf("version 2 has %d documents, version 1 had %d", len(after), len(before))
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("document %s differs:\n v1 %s\n v2 %s", k, v, after[k])
		}
	}
	waitUntil(t, "version 1's key space to be deleted", func() bool {
		return len(redistest.Dump(t, rc, keyspace(1).Base())) == 0
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
