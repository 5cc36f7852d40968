package telemetry

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// KafkaConsumerLag returns a reader of the lag of each consumer group in groups
// on every partition of topic, for RegisterConsumerLag: the partition's newest
// offset minus the group's committed offset (minus the oldest retained offset when
// the group has committed nothing on it yet). client and admin stay owned by the
// caller (sarama.NewClusterAdminFromClient shares the client).
func KafkaConsumerLag(client sarama.Client, admin sarama.ClusterAdmin, topic string, groups ...string) func(ctx context.Context) ([]ConsumerLag, error) {
	return func(ctx context.Context) ([]ConsumerLag, error) {
		if client == nil || admin == nil {
			return nil, errors.New("kafka consumer lag: nil client or admin")
		}
		return withContext(ctx, func() ([]ConsumerLag, error) {
			parts, err := client.Partitions(topic)
			if err != nil {
				return nil, fmt.Errorf("partitions of %s: %w", topic, err)
			}
			newest := make(map[int32]int64, len(parts))
			oldest := make(map[int32]int64, len(parts))
			for _, p := range parts {
				if newest[p], err = client.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
					return nil, fmt.Errorf("newest offset of %s/%d: %w", topic, p, err)
				}
				if oldest[p], err = client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
					return nil, fmt.Errorf("oldest offset of %s/%d: %w", topic, p, err)
				}
			}
			var out []ConsumerLag
			for _, g := range groups {
				resp, err := admin.ListConsumerGroupOffsets(g, map[string][]int32{topic: parts})
				switch {
				case errors.Is(err, sarama.ErrGroupIDNotFound):
					resp = nil // a group that has committed nothing yet
				case err != nil:
					return nil, fmt.Errorf("offsets of group %s: %w", g, err)
				}
				for _, p := range parts {
					committed := oldest[p]
					if resp != nil {
						if b := resp.GetBlock(topic, p); b != nil && b.Err == sarama.ErrNoError && b.Offset >= 0 {
							committed = b.Offset
						}
					}
					out = append(out, ConsumerLag{Group: g, Topic: topic, Partition: p, Lag: max(newest[p]-committed, 0)})
				}
			}
			return out, nil
		})
	}
}

// withContext runs fn, which cannot be cancelled (Sarama's calls take no context),
// and returns ctx's error if ctx ends first; fn then finishes in the background.
func withContext[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := fn()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
