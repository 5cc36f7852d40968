package kafka_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/mediamesh/mediamesh/infra/bus/kafka"
	"github.com/mediamesh/mediamesh/infra/bus/kafkatest"
)

// keyedPublisher gives every message the partition key its payload names, as the
// relay gives every event its program id. Watermill's in-order test groups messages
// by payload and expects each group in publish order: with this key each group stays
// on one partition, so the test checks our key routing, not luck.
type keyedPublisher struct{ message.Publisher }

func (p keyedPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		m.Metadata.Set(kafka.PartitionKeyMetadata, string(m.Payload))
	}
	return p.Publisher.Publish(topic, msgs...)
}

// TestWatermillConformance runs Watermill's universal Pub/Sub suite, in full, on our
// configuration (NewSaramaConfig through NewPublisher/NewSubscriber) against kfake.
// Deviations, forced by the suite rather than chosen: a short nack backoff; topics are created on
// first use (the suite uses a fresh topic per test), and the subscriber is wrapped so
// that the suite does not call SubscribeInitialize (ours creates no topics). The
// suite's TestReconnect skips itself: it restarts the broker with an external command,
// which an in-process broker has no equivalent of.
func TestWatermillConformance(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Start(t, 3, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(16))
	// The suite nacks 300 messages one after another: at the default 100 ms backoff
	// that alone takes 30 s.
	cfg := kafka.Config{Brokers: brokers, AutoCreateTopics: true, NackBackoff: 5 * time.Millisecond}

	withGroup := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		pub, err := kafka.NewPublisher(cfg, nil)
		if err != nil {
			t.Fatalf("publisher: %v", err)
		}
		sub, err := kafka.NewSubscriber(cfg, group, nil)
		if err != nil {
			t.Fatalf("subscriber: %v", err)
		}
		return keyedPublisher{pub}, struct{ message.Subscriber }{sub}
	}
	tests.TestPubSub(t,
		tests.Features{
			ConsumerGroups:      true,
			ExactlyOnceDelivery: false,
			GuaranteedOrder:     true,
			Persistent:          true,
		},
		func(t *testing.T) (message.Publisher, message.Subscriber) { return withGroup(t, "conformance") },
		withGroup,
	)
}
