// Package kafka is MediaMesh's Kafka bus: Watermill publishers and subscribers
// (watermill-kafka/v3 on IBM/sarama) configured once, here, with the settings that
// were verified against a Kafka-protocol broker, plus explicit topic creation.
//
// Guarantees the rest of the system relies on:
//
//   - Per-key order. A message's Kafka key is its metadata field PartitionKeyMetadata
//     (the relay sets the program id), the producer hashes the key to a partition, and
//     the producer is idempotent with one request in flight, so retries cannot reorder
//     or duplicate a partition's messages.
//   - At-least-once consumption. A subscriber marks a message's offset only after the
//     handler acked it (watermill-kafka does so), and Sarama only ever commits marked
//     offsets: whether it commits them on a timer (the default) or synchronously after
//     every ack (Config.CommitInterval < 0), a committed offset is never ahead of what
//     the handler finished. A projection that acks after its own database commit
//     therefore never loses an event; after a crash or a rebalance it sees some again.
//   - Explicit topics. Topics are created by EnsureTopics with their partition counts;
//     producing to a topic that does not exist fails instead of creating it with the
//     broker's defaults (unless Config.AutoCreateTopics, for tests).
package kafka

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// Defaults of Config.
const (
	DefaultClientID       = "mediamesh"
	DefaultVersion        = "4.0.0"
	DefaultCommitInterval = time.Second
	DefaultNackBackoff    = 100 * time.Millisecond
)

// Consumer group timing. Kafka (and kfake) reject session timeouts below 6 s; a
// 500 ms heartbeat notices a rebalance quickly, and a 3 s rebalance timeout bounds how
// long a rebalance waits for slow members. Watermill's universal test suite passes on
// kfake with exactly these values.
const (
	sessionTimeout    = 6 * time.Second
	heartbeatInterval = 500 * time.Millisecond
	rebalanceTimeout  = 3 * time.Second
)

// Config is what a deployment chooses about Kafka; everything else is fixed by
// NewSaramaConfig.
type Config struct {
	// Brokers are the seed addresses ("host:port").
	Brokers []string
	// ClientID names this process in the brokers' logs and quotas
	// (default DefaultClientID).
	ClientID string
	// Version is the newest Kafka protocol version Sarama may use (default
	// DefaultVersion). Sarama negotiates each request's version down to what the
	// broker supports, so a newer value than the broker's is safe. Sarama ≥ 1.46 is
	// required: 1.43 fails every consumer-group join at versions ≥ 2.4.
	Version string
	// ReplicationFactor of topics that EnsureTopics creates; 0 or -1 leaves it to the
	// broker's default.replication.factor.
	ReplicationFactor int16
	// CommitInterval is how often a subscriber commits the offsets its handlers have
	// acked (default DefaultCommitInterval). It bounds how much is redelivered after a
	// crash, never what is lost. A negative value commits synchronously after every
	// ack: less redelivery, one more broker round trip per message.
	CommitInterval time.Duration
	// NackBackoff is how long a subscriber waits before redelivering a message its
	// handler nacked (default DefaultNackBackoff). The partition delivers nothing else
	// meanwhile, which is what keeps per-key order through a failing handler.
	NackBackoff time.Duration
	// AutoCreateTopics lets producing or subscribing create a missing topic with the
	// broker's default partition count. Off in production (topics come from
	// EnsureTopics with their partition counts); Watermill's conformance suite, which
	// uses a fresh topic per test, turns it on.
	AutoCreateTopics bool
}

// withDefaults returns c with empty fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = DefaultCommitInterval
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = -1
	}
	if c.NackBackoff == 0 {
		c.NackBackoff = DefaultNackBackoff
	}
	return c
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka: no brokers"))
	}
	for i, b := range c.Brokers {
		if b == "" {
			errs = append(errs, fmt.Errorf("kafka: broker %d is empty", i))
		}
	}
	v, err := sarama.ParseKafkaVersion(c.Version)
	if err != nil {
		errs = append(errs, fmt.Errorf("kafka: version %q: %w", c.Version, err))
	} else if !v.IsAtLeast(sarama.V2_4_0_0) {
		// Older versions lack what the idempotent producer and the group protocol
		// settings here were verified with.
		errs = append(errs, fmt.Errorf("kafka: version %s is older than 2.4.0", c.Version))
	}
	if c.NackBackoff < 0 {
		errs = append(errs, fmt.Errorf("kafka: negative nack backoff %s", c.NackBackoff))
	}
	if c.ReplicationFactor < -1 {
		errs = append(errs, fmt.Errorf("kafka: replication factor %d", c.ReplicationFactor))
	}
	return errors.Join(errs...)
}

// NewSaramaConfig returns the Sarama configuration every MediaMesh publisher,
// subscriber and admin client uses. It is a fresh value each call: Sarama clients
// keep a pointer to it.
//
// Producer: idempotent (which Sarama allows only with acks from all in-sync
// replicas, retries and one open request per broker connection), so neither a retry
// nor a broker failover reorders or duplicates a partition's messages; lz4
// compression; the default hash partitioner on the message key. Producer.Flush is
// left alone: a flush frequency makes Watermill's one-message-at-a-time publisher
// much slower (about 10× at 1 ms, measured).
//
// Consumer: new groups start from the oldest offset (the default, newest, would
// silently skip everything published before a projection's first start); the sticky
// strategy moves as few partitions as possible on a rebalance, and each moved
// partition redelivers what was acked but not yet committed.
func NewSaramaConfig(c Config) (*sarama.Config, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	version, _ := sarama.ParseKafkaVersion(c.Version) // checked by Validate

	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	sc.Version = version
	sc.Metadata.AllowAutoTopicCreation = c.AutoCreateTopics
	sc.Admin.Timeout = 10 * time.Second

	sc.Net.MaxOpenRequests = 1
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 100 * time.Millisecond
	sc.Producer.Return.Successes = true // the sync producer Watermill uses needs both
	sc.Producer.Return.Errors = true
	sc.Producer.Compression = sarama.CompressionLZ4
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	sc.Producer.MaxMessageBytes = MaxMessageBytes

	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Group.Session.Timeout = sessionTimeout
	sc.Consumer.Group.Heartbeat.Interval = heartbeatInterval
	sc.Consumer.Group.Rebalance.Timeout = rebalanceTimeout
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{stickyStrategy{}}
	if c.CommitInterval > 0 {
		sc.Consumer.Offsets.AutoCommit.Enable = true
		sc.Consumer.Offsets.AutoCommit.Interval = c.CommitInterval
	} else {
		// watermill-kafka calls session.Commit after marking each acked message.
		sc.Consumer.Offsets.AutoCommit.Enable = false
	}

	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: sarama config: %w", err)
	}
	return sc, nil
}

// stickyStrategy is Sarama's sticky balance strategy, safe to share. Sarama's
// instance keeps its partition movements in a field while it plans, so one
// instance in a config used by several consumer groups at once (Watermill's
// subscriber starts a group per subscription from one config) is a data race;
// this one plans with a fresh instance each time, which is all that state is for.
type stickyStrategy struct{}

func (stickyStrategy) Name() string { return sarama.StickyBalanceStrategyName }

func (stickyStrategy) Plan(members map[string]sarama.ConsumerGroupMemberMetadata, topics map[string][]int32) (sarama.BalanceStrategyPlan, error) {
	return sarama.NewBalanceStrategySticky().Plan(members, topics)
}

func (stickyStrategy) AssignmentData(memberID string, topics map[string][]int32, generationID int32) ([]byte, error) {
	return sarama.NewBalanceStrategySticky().AssignmentData(memberID, topics, generationID)
}
