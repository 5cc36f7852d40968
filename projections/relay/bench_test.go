package relay_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/relay"
)

// memLog is an in-memory global log, so a benchmark measures the relay and the bus,
// not the event store.
type memLog struct {
	mu  sync.Mutex
	evs []events.Envelope
}

func (l *memLog) ReadAll(_ context.Context, after int64, limit int) ([]events.Envelope, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.evs), func(i int) bool { return l.evs[i].Position > after })
	return append([]events.Envelope(nil), l.evs[i:min(len(l.evs), i+limit)]...), nil
}

func (l *memLog) Subscribe(ctx context.Context, after int64, batchSize int, handle func(context.Context, []events.Envelope) error) error {
	for {
		evs, _ := l.ReadAll(ctx, after, batchSize)
		if len(evs) == 0 {
			<-ctx.Done()
			return ctx.Err()
		}
		if err := handle(ctx, evs); err != nil {
			return err
		}
		after = evs[len(evs)-1].Position
	}
}

func (l *memLog) HeadPosition(context.Context) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.evs) == 0 {
		return 0, nil
	}
	return l.evs[len(l.evs)-1].Position, nil
}

// BenchmarkRelay measures events per second published by the relay into kfake
// (one broker, content.events with 20 partitions) from an in-memory log of 1,000
// programs, for several worker counts. Each iteration relays 20,000 events.
func BenchmarkRelay(b *testing.B) {
	codec := events.NewCodec()
	const n, programs = 20000, 1000
	log := &memLog{}
	for i := range n {
		pid := fmt.Sprintf("p%04d", i%programs)
		typ, data, _ := codec.Encode(events.ProgramUpdated{ProgramID: pid})
		log.evs = append(log.evs, events.Envelope{
			EventID: fmt.Sprintf("00000000-0000-7000-8000-%012d", i), Type: typ, Data: data,
			StreamID: events.ProgramStreamID(pid), Version: int64(i/programs + 1), Position: int64(i + 1),
			OccurredAt: time.Now(),
		})
	}
	db, _ := pgtest.NewDB(b)
	runs := 0 // the testing package calls a benchmark function more than once
	for _, workers := range []int{1, 16, 64, 128} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			cfg := kafka.Config{Brokers: kafkatest.Start(b, 1)}
			if err := kafka.EnsureTopics(b.Context(), cfg, kafka.Topics()...); err != nil {
				b.Fatal(err)
			}
			pub, err := kafka.NewPublisher(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			var total time.Duration
			for range b.N {
				runs++
				name := fmt.Sprintf("bench-%d", runs)
				r, err := relay.New(db, log, pub, codec, relay.Config{Name: name, Workers: workers})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(b.Context())
				done := make(chan error, 1)
				began := time.Now()
				go func() { done <- r.Run(ctx) }()
				deadline := time.Now().Add(2 * time.Minute)
				for r.Status().Published < n {
					if time.Now().After(deadline) {
						b.Fatalf("relay stuck: %+v", r.Status())
					}
					time.Sleep(time.Millisecond)
				}
				total += time.Since(began)
				cancel()
				<-done
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
		})
	}
}
