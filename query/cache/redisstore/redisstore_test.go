package redisstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/redis/redistest"
	"github.com/mediamesh/mediamesh/query/cache/redisstore"
)

func TestStore(t *testing.T) {
	t.Parallel()
	rc := redistest.Client(t)
	ns := redistest.Namespace(t, rc)
	s, err := redisstore.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := redisstore.New(nil); err == nil {
		t.Error("nil client accepted")
	}
	ctx := context.Background()

	if err := s.Set(ctx, ns+"a", []byte("1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	vals, err := s.MGet(ctx, ns+"a", ns+"missing", ns+"a")
	if err != nil || string(vals[0]) != "1" || vals[1] != nil || string(vals[2]) != "1" {
		t.Fatalf("MGet = %q, %v", vals, err)
	}
	if vals, err := s.MGet(ctx, ns+"missing"); err != nil || len(vals) != 1 || vals[0] != nil {
		t.Fatalf("MGet of one missing key = %q, %v", vals, err)
	}

	key := ns + "rank"
	if err := s.ReplaceRanking(ctx, key, []string{"a", "b", "c"}, []float64{3, 1, 2}, time.Minute); err != nil {
		t.Fatal(err)
	}
	ids, total, err := s.RevRange(ctx, key, 1, 5)
	if err != nil || total != 3 || !slices.Equal(ids, []string{"c", "b"}) {
		t.Fatalf("RevRange = %v, %d, %v", ids, total, err)
	}
	if err := s.ReplaceRanking(ctx, key, []string{"z"}, []float64{1}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ids, total, _ := s.RevRange(ctx, key, 0, 5); total != 1 || !slices.Equal(ids, []string{"z"}) {
		t.Fatalf("after a replace: %v, %d", ids, total)
	}
	if err := s.ReplaceRanking(ctx, key, nil, nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, total, _ := s.RevRange(ctx, key, 0, 5); total != 0 {
		t.Fatalf("an empty ranking left %d members", total)
	}
	if err := s.ReplaceRanking(ctx, key, []string{"a"}, nil, time.Minute); err == nil {
		t.Error("mismatched ids and scores accepted")
	}
}

// TestSubscribe: messages arrive after ready, and cancelling the context ends a
// subscription blocked in a read at once (not after the ping interval).
func TestSubscribe(t *testing.T) {
	t.Parallel()
	rc := redistest.Client(t)
	ns := redistest.Namespace(t, rc)
	s, err := redisstore.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 1)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(ctx, ns+"chan", func() { close(ready) }, func(b []byte) { got <- string(b) })
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("not subscribed")
	}
	if err := rc.Publish(context.Background(), ns+"chan", "hello").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("message %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Subscribe after cancel: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Subscribe did not end with its context")
	}
}
