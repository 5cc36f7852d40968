package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
)

// Topic names.
const (
	// TopicContentEvents carries every event of the event store, published by the
	// relay and keyed by program id.
	TopicContentEvents = "content.events"
	// TopicIngestEvents carries ingest work items.
	TopicIngestEvents = "ingest.events"
)

// MaxMessageBytes is the largest message MediaMesh produces, and what its topics
// accept (max.message.bytes; Kafka's default is about 1 MB): an ingest message
// may carry one item of up to 1 MiB (a feed line) with its envelope, and an event
// relayed from such an item may be as large. The producer's limit is the same
// (NewSaramaConfig); consumers fetch larger messages by growing their fetch size.
const MaxMessageBytes = 4 << 20

// Topic is a topic and how many partitions it is created with. The count bounds
// how many members of one consumer group work in parallel; it is never raised
// automatically afterwards, because that would move keys to other partitions and
// break per-key order across the change.
type Topic struct {
	Name       string
	Partitions int32
}

// Topics returns MediaMesh's topics: content.events with 20 partitions and
// ingest.events with 10.
func Topics() []Topic {
	return []Topic{
		{Name: TopicContentEvents, Partitions: 20},
		{Name: TopicIngestEvents, Partitions: 10},
	}
}

// EnsureTopics creates every topic that does not exist yet, accepting messages of
// up to MaxMessageBytes. A topic that exists is
// left as it is, whatever its partition count, so EnsureTopics is safe to run at every
// start and from several processes at once.
func EnsureTopics(ctx context.Context, c Config, topics ...Topic) error {
	sc, err := NewSaramaConfig(c)
	if err != nil {
		return err
	}
	c = c.withDefaults()
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 && d < sc.Admin.Timeout {
			sc.Admin.Timeout = d
		}
	}
	admin, err := sarama.NewClusterAdmin(c.Brokers, sc)
	if err != nil {
		return fmt.Errorf("kafka admin: %w", err)
	}
	defer admin.Close()
	for _, t := range topics {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("create topic %s: %w", t.Name, err)
		}
		if t.Partitions < 1 {
			return fmt.Errorf("create topic %s: %d partitions", t.Name, t.Partitions)
		}
		maxBytes := strconv.Itoa(MaxMessageBytes)
		err := admin.CreateTopic(t.Name, &sarama.TopicDetail{
			NumPartitions:     t.Partitions,
			ReplicationFactor: c.ReplicationFactor,
			ConfigEntries:     map[string]*string{"max.message.bytes": &maxBytes},
		}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t.Name, err)
		}
	}
	return nil
}
