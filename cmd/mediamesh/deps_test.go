package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mediamesh/mediamesh/infra/config"
)

// TestSweepDrainsABacklogAndStopsOnClose: each tick deletes batches until one comes
// back short, and closing the deps stops the sweeper (close waits for it).
func TestSweepDrainsABacklogAndStopsOnClose(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	backlog := 2*sweepBatch + 5
	calls, callsToDrain := 0, 0
	drained := make(chan struct{})
	d := &deps{}
	d.sweep(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), "test sweeper", time.Millisecond,
		func(ctx context.Context, limit int) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			n := min(limit, backlog)
			backlog -= n
			if backlog == 0 && n < limit && n > 0 {
				callsToDrain = calls
				close(drained)
			}
			return int64(n), nil
		})
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("the sweeper did not drain the backlog within 10 s")
	}
	d.close() // returns only once the sweeper has stopped
	mu.Lock()
	defer mu.Unlock()
	if callsToDrain != 3 {
		t.Errorf("%d calls drained %d rows in batches of %d, want 3", callsToDrain, 2*sweepBatch+5, sweepBatch)
	}
}

func TestNewRedisClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      config.Redis
		nilWant bool
		addr    string
		cluster bool
	}{
		{"off", config.Redis{Disabled: true}, true, "", false},
		{"url", config.Redis{URL: "redis://:pw@127.0.0.1:6390/3"}, false, "127.0.0.1:6390", false},
		{"cluster", config.Redis{Addrs: []string{"r1:7000", "r2:7001"}}, false, "", true},
	}
	for _, tt := range tests {
		c, err := newRedisClient(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if (c == nil) != tt.nilWant {
			t.Fatalf("%s: client %v", tt.name, c)
		}
		if c == nil {
			continue
		}
		t.Cleanup(func() { _ = c.Close() })
		switch cl := c.(type) {
		case *goredis.Client:
			if tt.cluster || cl.Options().Addr != tt.addr || cl.Options().DB != 3 || cl.Options().Password != "pw" {
				t.Errorf("%s: options %+v", tt.name, cl.Options())
			}
		case *goredis.ClusterClient:
			if !tt.cluster {
				t.Errorf("%s: a cluster client", tt.name)
			}
		default:
			t.Errorf("%s: %T", tt.name, c)
		}
	}
	if _, err := newRedisClient(config.Redis{}); err == nil {
		t.Error("an empty Redis configuration built a client")
	}
}
