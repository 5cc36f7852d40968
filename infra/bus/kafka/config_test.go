package kafka_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/mediamesh/mediamesh/infra/bus/kafka"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     kafka.Config
		wantErr []string // substrings; empty means valid
	}{
		{name: "defaults", cfg: kafka.Config{Brokers: []string{"127.0.0.1:9092"}}},
		{name: "explicit", cfg: kafka.Config{Brokers: []string{"a:1", "b:2"}, Version: "3.7.0", CommitInterval: -1, ReplicationFactor: 3}},
		{name: "no brokers", cfg: kafka.Config{}, wantErr: []string{"no brokers"}},
		{name: "bad version", cfg: kafka.Config{Brokers: []string{"a:1"}, Version: "x"}, wantErr: []string{`version "x"`}},
		{name: "old version", cfg: kafka.Config{Brokers: []string{"a:1"}, Version: "2.1.0"}, wantErr: []string{"older than 2.4.0"}},
		{
			name:    "every problem at once",
			cfg:     kafka.Config{Brokers: []string{""}, Version: "0.10.0.0", NackBackoff: -time.Second, ReplicationFactor: -2},
			wantErr: []string{"broker 0 is empty", "older than 2.4.0", "negative nack backoff", "replication factor -2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, missing %q", err, w)
				}
			}
		})
	}
}

func TestNewSaramaConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		cfg            kafka.Config
		wantAutoCommit bool
		wantInterval   time.Duration
	}{
		{name: "default commits acked offsets every second", cfg: kafka.Config{Brokers: []string{"a:1"}}, wantAutoCommit: true, wantInterval: time.Second},
		{name: "interval", cfg: kafka.Config{Brokers: []string{"a:1"}, CommitInterval: 200 * time.Millisecond}, wantAutoCommit: true, wantInterval: 200 * time.Millisecond},
		{name: "commit after every ack", cfg: kafka.Config{Brokers: []string{"a:1"}, CommitInterval: -1}, wantAutoCommit: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sc, err := kafka.NewSaramaConfig(tt.cfg)
			if err != nil {
				t.Fatalf("NewSaramaConfig: %v", err)
			}
			checks := []struct {
				what string
				ok   bool
			}{
				{"idempotent producer", sc.Producer.Idempotent},
				{"acks from all in-sync replicas", sc.Producer.RequiredAcks == sarama.WaitForAll},
				{"one open request", sc.Net.MaxOpenRequests == 1},
				{"producer retries", sc.Producer.Retry.Max > 0},
				{"lz4", sc.Producer.Compression == sarama.CompressionLZ4},
				{"new groups start at the oldest offset", sc.Consumer.Offsets.Initial == sarama.OffsetOldest},
				{"heartbeat 500ms", sc.Consumer.Group.Heartbeat.Interval == 500*time.Millisecond},
				{"rebalance timeout 3s", sc.Consumer.Group.Rebalance.Timeout == 3*time.Second},
				{"session timeout >= 6s", sc.Consumer.Group.Session.Timeout >= 6*time.Second},
				{"protocol >= 2.4", sc.Version.IsAtLeast(sarama.V2_4_0_0)},
				{"no topic auto-creation", !sc.Metadata.AllowAutoTopicCreation},
				{"auto commit", sc.Consumer.Offsets.AutoCommit.Enable == tt.wantAutoCommit},
				{"commit interval", !tt.wantAutoCommit || sc.Consumer.Offsets.AutoCommit.Interval == tt.wantInterval},
			}
			for _, c := range checks {
				if !c.ok {
					t.Errorf("%s: not set", c.what)
				}
			}
		})
	}
	if _, err := kafka.NewSaramaConfig(kafka.Config{}); err == nil {
		t.Error("NewSaramaConfig accepted a config without brokers")
	}
}

func TestGroupName(t *testing.T) {
	t.Parallel()
	if got, want := kafka.GroupName("catalog.v1"), "mediamesh.projection.catalog.v1"; got != want {
		t.Fatalf("GroupName = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "has space", "-leading", strings.Repeat("x", 201)} {
		if _, err := kafka.NewSubscriber(kafka.Config{Brokers: []string{"127.0.0.1:1"}}, bad, nil); err == nil {
			t.Errorf("NewSubscriber accepted group %q", bad)
		}
	}
}

// TestBalanceStrategyIsSafeToShare: several consumer groups made from one config
// plan at once (Watermill starts a group per subscription). Under -race, a shared
// strategy that keeps state while planning fails this test; the plans must still
// be sticky's: every partition assigned exactly once.
func TestBalanceStrategyIsSafeToShare(t *testing.T) {
	t.Parallel()
	sc, err := kafka.NewSaramaConfig(kafka.Config{Brokers: []string{"127.0.0.1:9092"}})
	if err != nil {
		t.Fatal(err)
	}
	strategies := sc.Consumer.Group.Rebalance.GroupStrategies
	if len(strategies) != 1 || strategies[0].Name() != sarama.StickyBalanceStrategyName {
		t.Fatalf("strategies %v, want sticky only", strategies)
	}
	s := strategies[0]
	members := map[string]sarama.ConsumerGroupMemberMetadata{
		"a": {Topics: []string{"t"}}, "b": {Topics: []string{"t"}}, "c": {Topics: []string{"t"}},
	}
	topics := map[string][]int32{"t": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for g := range errs {
		wg.Go(func() {
			for range 50 {
				plan, err := s.Plan(members, topics)
				if err != nil {
					errs[g] = err
					return
				}
				seen := map[int32]int{}
				for _, byTopic := range plan {
					for _, p := range byTopic["t"] {
						seen[p]++
					}
				}
				if len(seen) != 10 {
					errs[g] = fmt.Errorf("plan %v assigns %d partitions, want 10", plan, len(seen))
					return
				}
				for p, n := range seen {
					if n != 1 {
						errs[g] = fmt.Errorf("partition %d assigned %d times", p, n)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
