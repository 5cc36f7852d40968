package relay

import (
	"fmt"
	"testing"
)

// TestTrackerWatermark: acknowledgements in any order move the watermark only over
// a prefix that is acknowledged entirely, and give back one slot per event passed.
func TestTrackerWatermark(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		positions     []int64
		ackOrder      []int // indexes into positions
		wantWatermark []int64
	}{
		{"in order", []int64{10, 20, 30}, []int{0, 1, 2}, []int64{10, 20, 30}},
		{"reverse", []int64{10, 20, 30}, []int{2, 1, 0}, []int64{5, 5, 30}},
		{"gap then fill", []int64{10, 20, 30, 40}, []int{0, 2, 3, 1}, []int64{10, 10, 10, 40}},
		{"sparse positions", []int64{1 << 20, 1<<20 | 1, 7 << 20}, []int{1, 0, 2}, []int64{5, 1<<20 | 1, 7 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := newTracker(5, len(tt.positions))
			items := make([]*item, len(tt.positions))
			for i, p := range tt.positions {
				tr.slots <- struct{}{}
				items[i] = &item{position: p}
				tr.add(items[i])
			}
			for step, i := range tt.ackOrder {
				tr.ack(items[i])
				w, inFlight := tr.state()
				if w != tt.wantWatermark[step] {
					t.Fatalf("after acking %v: watermark %d, want %d", tt.ackOrder[:step+1], w, tt.wantWatermark[step])
				}
				if len(tr.slots) != inFlight {
					t.Fatalf("after acking %v: %d slots taken for %d in flight", tt.ackOrder[:step+1], len(tr.slots), inFlight)
				}
			}
			if w, inFlight := tr.state(); inFlight != 0 || w != tt.positions[len(tt.positions)-1] {
				t.Fatalf("all acked: watermark %d, in flight %d", w, inFlight)
			}
		})
	}
}

func TestShardOfIsStable(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for i := range 1000 {
		key := fmt.Sprintf("program-%d", i)
		s := shardOf(key, 16)
		if s != shardOf(key, 16) || s < 0 || s >= 16 {
			t.Fatalf("shardOf(%q) = %d, unstable or out of range", key, s)
		}
		seen[s] = true
	}
	if len(seen) != 16 {
		t.Fatalf("1000 keys used %d of 16 shards", len(seen))
	}
}
