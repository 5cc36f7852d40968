// Package redistest gives tests the machine's Redis and a namespace of their own in
// it, emptied when the test ends, so parallel tests (and packages) sharing one Redis
// cannot see each other's keys.
//
// The server is MEDIAMESH_TEST_REDIS_URL (default redis://127.0.0.1:6379/0). A server
// that is not reachable fails the test with the command that starts it: Redis is a
// core dependency of the test suite and its tests never skip.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	mmredis "github.com/mediamesh/mediamesh/infra/redis"
)

// StartHint is the command that starts this machine's Redis.
const StartHint = `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no`

// URL is the test server's URL.
func URL() string {
	if u := os.Getenv("MEDIAMESH_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Client returns a client of the test server, closed when t ends; it fails t when
// the server does not answer.
func Client(t testing.TB) goredis.UniversalClient {
	t.Helper()
	c, err := mmredis.New(URL())
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redistest: Redis at %s is not reachable (%v); start it with: %s", URL(), err, StartHint)
	}
	return c
}

// Namespace returns a fresh key prefix ("test-<random>:") whose keys are deleted when
// t ends.
func Namespace(t testing.TB, c goredis.UniversalClient) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	ns := "test-" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() { Clear(t, c, ns) })
	return ns
}

// Keyspace returns the catalog key space of version 1 under a fresh namespace.
func Keyspace(t testing.TB, c goredis.UniversalClient) mmredis.Keyspace {
	t.Helper()
	return mmredis.CatalogKeyspace(1).WithNamespace(Namespace(t, c))
}

// Clear deletes every key under prefix, guard keys ("{prefix…}:guard") included.
func Clear(t testing.TB, c goredis.UniversalClient, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, pattern := range []string{prefix + "*", "{" + prefix + "*"} {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var batch []string
		flush := func() {
			if len(batch) > 0 {
				_, _ = c.Pipelined(ctx, func(p goredis.Pipeliner) error {
					for _, k := range batch {
						p.Del(ctx, k) // one key per command: keys may be in different slots
					}
					return nil
				})
				batch = batch[:0]
			}
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == 1000 {
				flush()
			}
		}
		flush()
		if err := iter.Err(); err != nil {
			t.Errorf("redistest: clear %s: %v", pattern, err)
		}
	}
}

// Dump returns every string key under prefix (guards excluded) with its value.
func Dump(t testing.TB, c goredis.UniversalClient, prefix string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]string{}
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		v, err := c.Get(ctx, k).Result()
		if err == goredis.Nil {
			continue
		}
		if err != nil {
			t.Fatalf("redistest: get %s: %v", k, err)
		}
		out[k] = v
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("redistest: scan %s: %v", prefix, err)
	}
	return out
}
