package kafka_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
)

// BenchmarkPublish measures publishing through one publisher with our configuration
// into kfake (one broker, 20 partitions), from several goroutines that each own a set
// of keys, as the relay's workers do. Each iteration publishes 10,000 messages.
func BenchmarkPublish(b *testing.B) {
	for _, goroutines := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			cfg := kafka.Config{Brokers: kafkatest.Start(b, 1)}
			if err := kafka.EnsureTopics(b.Context(), cfg, kafka.Topic{Name: "bench", Partitions: 20}); err != nil {
				b.Fatal(err)
			}
			pub, err := kafka.NewPublisher(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			const n = 10000
			var total time.Duration
			for range b.N {
				began := time.Now()
				var wg sync.WaitGroup
				for g := range goroutines {
					wg.Go(func() {
						for i := range n / goroutines {
							if err := pub.Publish("bench", keyedMessage(fmt.Sprintf("k%d-%d", g, i%50), i)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				total += time.Since(began)
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "msgs/s")
		})
	}
}
