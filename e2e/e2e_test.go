package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/projections/documents"
)

// visibleWithin bounds how long a command may take to show in every sink. It is
// generous for a loaded 2-core machine running the race detector; the freshness
// bench measures the real latency.
const visibleWithin = 20 * time.Second

// scenario drives one program's life over HTTP and checks, after each step, the
// catalog row in PostgreSQL, the documents in Redis and the search index.
func scenario(t *testing.T, s *system) {
	t.Helper()
	created := s.command(t, http.StatusCreated, http.MethodPost, "/v1/programs",
		`{"title":"Deep Sea Voyager","description":"Life below 1,000 m.","category":"documentary","language":"en","tags":["nature","ocean"]}`)
	pid := created["id"].(string)
	added := s.command(t, http.StatusCreated, http.MethodPost, "/v1/programs/"+pid+"/episodes",
		`{"title":"The Abyss","number":1,"duration_seconds":2700}`)
	eid := added["id"].(string)
	s.command(t, http.StatusOK, http.MethodPost, "/v1/episodes/"+eid+"/publish", "")
	published := s.command(t, http.StatusOK, http.MethodPost, "/v1/programs/"+pid+"/publish", "")
	version := int64(published["version"].(float64))
	if version != 4 {
		t.Fatalf("published at version %d, want 4", version)
	}

	// PostgreSQL read model.
	eventually(t, visibleWithin, "catalog row published", func() error {
		status, v, err := s.programRow(pid)
		if err != nil || status != "published" || v != version {
			return fmt.Errorf("row %s v%d (%v)", status, v, err)
		}
		return nil
	})
	// Redis documents, in API.md's shapes.
	var doc documents.Program
	eventually(t, visibleWithin, "program document", func() error {
		ok, err := s.redisJSON(t, s.keys.Program(pid), &doc)
		if err != nil || !ok || doc.Version != version {
			return fmt.Errorf("document %v %+v (%v)", ok, doc, err)
		}
		return nil
	})
	if doc.Title != "Deep Sea Voyager" || doc.EpisodeCount != 1 || doc.Category != "documentary" || !slices.Equal(doc.Tags, []string{"nature", "ocean"}) ||
		doc.PublishedAt == nil || string(doc.Images) != "{}" {
		t.Errorf("program document %+v", doc)
	}
	var list []documents.Episode
	if ok, err := s.redisJSON(t, s.keys.ProgramEpisodes(pid), &list); !ok || err != nil || len(list) != 1 || list[0].ID != eid || list[0].Season != 1 {
		t.Errorf("episode list %v %+v (%v)", ok, list, err)
	}
	var ep documents.Episode
	if ok, err := s.redisJSON(t, s.keys.Episode(eid), &ep); !ok || err != nil || ep.Title != "The Abyss" || ep.ProgramID != pid || ep.DurationSeconds != 2700 {
		t.Errorf("episode document %v %+v (%v)", ok, ep, err)
	}
	// Search, typo tolerant.
	eventually(t, visibleWithin, "search hit", func() error {
		ids, err := s.searchIDs("deep sea voyagr")
		if err != nil || !slices.Contains(ids, pid) {
			return fmt.Errorf("search found %v (%v)", ids, err)
		}
		return nil
	})

	// An edit shows everywhere.
	s.command(t, http.StatusOK, http.MethodPatch, "/v1/programs/"+pid, `{"title":"Deep Sea Explorer"}`)
	eventually(t, visibleWithin, "edited document", func() error {
		var d documents.Program
		if ok, err := s.redisJSON(t, s.keys.Program(pid), &d); err != nil || !ok || d.Title != "Deep Sea Explorer" || d.Version != version+1 {
			return fmt.Errorf("document %v %+v (%v)", ok, d, err)
		}
		return nil
	})
	eventually(t, visibleWithin, "edited search", func() error {
		ids, err := s.searchIDs("explorer")
		if err != nil || !slices.Contains(ids, pid) {
			return fmt.Errorf("search found %v (%v)", ids, err)
		}
		return nil
	})

	// Unpublishing removes it from every discovery sink.
	s.command(t, http.StatusOK, http.MethodPost, "/v1/programs/"+pid+"/unpublish", "")
	eventually(t, visibleWithin, "documents removed", func() error {
		for _, k := range []string{s.keys.Program(pid), s.keys.ProgramEpisodes(pid), s.keys.Episode(eid)} {
			if n, err := s.redis.Exists(context.Background(), k).Result(); err != nil || n != 0 {
				return fmt.Errorf("%s still exists (%v)", k, err)
			}
		}
		return nil
	})
	eventually(t, visibleWithin, "search hit removed", func() error {
		ids, err := s.searchIDs("explorer")
		if err != nil || slices.Contains(ids, pid) {
			return fmt.Errorf("search still finds %v (%v)", ids, err)
		}
		return nil
	})
	if status, _, err := s.programRow(pid); err != nil || status != "unpublished" {
		t.Errorf("catalog row %s (%v), want unpublished", status, err)
	}
}

// TestEmbeddedEndToEnd: command over HTTP → PostgreSQL event store → runtime on the
// global log → catalog row, Redis documents, search hit.
func TestEmbeddedEndToEnd(t *testing.T) {
	t.Parallel()
	s := newSystem(t, false)
	background(t, "projector", func(ctx context.Context) error { return runProjector(ctx, s.config(0), quiet) })
	scenario(t, s)
}

// TestKafkaEndToEnd: command over HTTP → event store → relay → kfake → one consumer
// group per projection → the same sinks. Then the relay publishes everything again
// (its checkpoint reset, as after restoring an old one): every group consumes the
// duplicates and nothing changes.
func TestKafkaEndToEnd(t *testing.T) {
	t.Parallel()
	s := newSystem(t, true)
	background(t, "projector", func(ctx context.Context) error { return runProjector(ctx, s.config(0), quiet) })
	scenario(t, s)

	head, err := s.store.HeadPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Wait for every group (editorial's too: the scenario only waited for the
	// discovery sinks) to commit everything, take the reference, then relay the
	// whole log again.
	waitGroupsCaughtUp(t, s.brokers, visibleWithin)
	before := checksums(t, s.pool)
	docsBefore, n := redisDocs(t, s.redis, s.ns)
	s.stopRelay()
	if _, err := s.pool.Exec(context.Background(), `UPDATE relay_checkpoints SET position = 0`); err != nil {
		t.Fatal(err)
	}
	s.stopRelay = s.startRelay(t)
	eventually(t, visibleWithin, "relay republished", func() error {
		var pos int64
		if err := s.pool.QueryRow(context.Background(), `SELECT max(position) FROM relay_checkpoints`).Scan(&pos); err != nil || pos < head {
			return fmt.Errorf("relay checkpoint %d (%v), head %d", pos, err, head)
		}
		return nil
	})
	waitGroupsCaughtUp(t, s.brokers, visibleWithin)
	if after := checksums(t, s.pool); !reflect.DeepEqual(after, before) {
		t.Errorf("read models changed by redelivery\nbefore %v\n after %v", before, after)
	}
	if docsAfter, m := redisDocs(t, s.redis, s.ns); docsAfter != docsBefore || m != n {
		t.Errorf("documents changed by redelivery: %s (%d) → %s (%d)", docsBefore, n, docsAfter, m)
	}
}

// waitGroupsCaughtUp waits until every projection's consumer group has committed
// the end of every partition of content.events.
func waitGroupsCaughtUp(t *testing.T, brokers []string, timeout time.Duration) {
	t.Helper()
	waitConsumersCaughtUp(t, brokers, timeout, "catalog.v1", "editorial.v1", "search.v1")
}

// waitConsumersCaughtUp waits until the consumer groups of the given projection
// versions ("catalog.v2") have committed the end of every partition of
// content.events.
func waitConsumersCaughtUp(t *testing.T, brokers []string, timeout time.Duration, consumers ...string) {
	t.Helper()
	sc, err := kafka.NewSaramaConfig(kafka.Config{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := client.Partitions(kafka.TopicContentEvents)
	if err != nil {
		t.Fatal(err)
	}
	groups := []string{}
	for _, name := range consumers {
		groups = append(groups, kafka.GroupName(name))
	}
	eventually(t, timeout, "consumer groups caught up", func() error {
		for _, g := range groups {
			offs, err := admin.ListConsumerGroupOffsets(g, map[string][]int32{kafka.TopicContentEvents: parts})
			if err != nil {
				return err
			}
			for _, p := range parts {
				end, err := client.GetOffset(kafka.TopicContentEvents, p, sarama.OffsetNewest)
				if err != nil {
					return err
				}
				b := offs.GetBlock(kafka.TopicContentEvents, p)
				committed := int64(-1)
				if b != nil {
					committed = b.Offset
				}
				if end > 0 && committed < end {
					return fmt.Errorf("group %s partition %d at %d of %d", g, p, committed, end)
				}
			}
		}
		return nil
	})
}
