package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mediamesh/mediamesh/command/ingest"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
)

// TestIngestOverKafka: the Kafka mode's bus (ingest.events with 10 partitions,
// franz-go's in-process broker) carries the batched messages as the SQL bus does:
// every item applied once, the counts exact.
func TestIngestOverKafka(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Start(t, 1, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(10))
	kcfg := kafka.Config{Brokers: brokers, AutoCreateTopics: true, NackBackoff: 5 * time.Millisecond}
	e := newEnv(t, ingest.Config{})
	pub, err := kafka.NewPublisher(kcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	svc, err := ingest.NewService(e.jobs, pub, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := kafka.NewSubscriber(kcfg, ingest.ConsumerGroup, nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ingest.NewWorker(e.jobs, sub, e.store, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = w.Run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped; _ = sub.Close() })

	progs := catalog(300, 1)
	body, ex := encodeNDJSON(t, progs, nil)
	e.svc = svc
	j := e.waitJob(t, e.submit(t, "application/x-ndjson", body), done)
	if j.Status != ingest.StatusCompleted || j.Succeeded != ex.total {
		t.Fatalf("job %s", summary(j))
	}
	got, want := e.eventCounts(t), expectedCounts(progs)
	for typ, n := range want {
		if got[typ] != n {
			t.Errorf("%s: %d events, want %d", typ, got[typ], n)
		}
	}
}
