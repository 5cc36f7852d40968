package kafka

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wmkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
)

// PartitionKeyMetadata is the message metadata field whose value becomes the Kafka
// message key. Messages with the same key go to the same partition, in publish order;
// the relay sets it to the program id. It also travels as a header.
const PartitionKeyMetadata = "partition_key"

// Marshaler is watermill-kafka's default marshaler (payload as value, metadata and
// the message UUID as headers) plus the key from PartitionKeyMetadata.
//
// A message without that field gets no key, so the producer spreads such messages
// over the partitions instead of hashing the empty key to one partition.
type Marshaler struct {
	wmkafka.DefaultMarshaler
}

// Marshal implements watermill-kafka's Marshaler.
func (m Marshaler) Marshal(topic string, msg *message.Message) (*sarama.ProducerMessage, error) {
	km, err := m.DefaultMarshaler.Marshal(topic, msg)
	if err != nil {
		return nil, fmt.Errorf("marshal message %s: %w", msg.UUID, err)
	}
	if key := msg.Metadata.Get(PartitionKeyMetadata); key != "" {
		km.Key = sarama.StringEncoder(key)
	}
	return km, nil
}

// NewPublisher returns a publisher on c's brokers with NewSaramaConfig's settings.
//
// Publish sends one message at a time and waits for the brokers' acknowledgement
// before sending the next: it returns nil only when every message is durable, in
// order. For throughput, publish from several goroutines, each owning a set of keys
// so that per-key order holds (the relay does this).
func NewPublisher(c Config, logger watermill.LoggerAdapter) (*wmkafka.Publisher, error) {
	sc, err := NewSaramaConfig(c)
	if err != nil {
		return nil, err
	}
	p, err := wmkafka.NewPublisher(wmkafka.PublisherConfig{
		Brokers:               c.Brokers,
		Marshaler:             Marshaler{},
		OverwriteSaramaConfig: sc,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("kafka publisher: %w", err)
	}
	return p, nil
}

// groupNamePattern is what a consumer group name may contain: stable, readable, and
// safe in metrics labels.
var groupNamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,199}$`)

// GroupName returns the consumer group of a projection. The name is stable (it is
// where the group's committed offsets live) and should carry the projection's version
// ("catalog.v1"), so that a rebuilt version consumes with a group of its own.
func GroupName(projection string) string {
	return "mediamesh.projection." + projection
}

// NewSubscriber returns a subscriber that consumes in consumer group group (use
// GroupName), with NewSaramaConfig's settings.
//
// Each partition delivers one message at a time and waits for its Ack before the
// next; a Nack redelivers the same message after a short pause. The offset of a
// message is marked only after its Ack, and only marked offsets are committed (see
// Config.CommitInterval), so an event is never skipped; a member that stops or a
// rebalance redelivers what was acked but not yet committed.
//
// Consuming without a group is deliberately not offered: every consumer in MediaMesh
// needs its progress to survive restarts.
func NewSubscriber(c Config, group string, logger watermill.LoggerAdapter) (*wmkafka.Subscriber, error) {
	if !groupNamePattern.MatchString(group) {
		return nil, fmt.Errorf("kafka subscriber: consumer group %q: %w", group, errBadGroup)
	}
	sc, err := NewSaramaConfig(c)
	if err != nil {
		return nil, err
	}
	c = c.withDefaults()
	s, err := wmkafka.NewSubscriber(wmkafka.SubscriberConfig{
		Brokers:               c.Brokers,
		Unmarshaler:           Marshaler{},
		OverwriteSaramaConfig: sc,
		ConsumerGroup:         group,
		NackResendSleep:       c.NackBackoff,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("kafka subscriber: %w", err)
	}
	return s, nil
}

var errBadGroup = errors.New("must be 1–200 letters, digits, '.', '_' or '-', starting with a letter or digit")
