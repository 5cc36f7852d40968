package testservers

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisInstallHint is the command that installs redis-server and redis-cli.
const RedisInstallHint = "apt-get install -y redis-server redis-tools"

// redisClusterNodes is 3 masters with one replica each: the smallest cluster in
// which every slot has a replica.
const redisClusterNodes = 6

// RedisCluster is a running six-node Redis Cluster (3 masters, 3 replicas) on
// 127.0.0.1, stopped at the test's cleanup.
type RedisCluster struct {
	// Addrs are the nodes' host:port addresses, the seeds a cluster client takes
	// (MEDIAMESH_REDIS_URL accepts them comma-separated).
	Addrs []string
	nodes []*process
}

// URL is the addresses as MEDIAMESH_REDIS_URL takes them.
func (c *RedisCluster) URL() string { return strings.Join(c.Addrs, ",") }

// StartRedisCluster starts six redis-server processes with cluster-enabled yes on
// spare ports, joins them with `redis-cli --cluster create … --cluster-replicas 1`,
// and waits until every node reports cluster_state:ok with all 16384 slots served.
// It takes about 2–4 s.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (%v): %s", err, RedisInstallHint)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is not installed (%v): %s", err, RedisInstallHint)
	}
	dir := t.TempDir()
	c := &RedisCluster{}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if err := n.stop(syscall.SIGTERM, 10*time.Second); err != nil {
				t.Errorf("stop redis cluster: %v", err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for i := range redisClusterNodes {
		p, addr, err := startRedisNode(ctx, server, filepath.Join(dir, "node-"+strconv.Itoa(i+1)))
		if err != nil {
			t.Fatalf("start redis cluster node %d: %v", i+1, err)
		}
		c.nodes = append(c.nodes, p)
		c.Addrs = append(c.Addrs, addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitHealthy(ctx); err != nil {
		t.Fatalf("redis cluster did not become healthy: %v\nredis-cli said:\n%s", err, out)
	}
	return c
}

// startRedisNode starts one cluster-enabled node in dir on a spare port, trying
// again on another port if the first one is taken by the time the server binds.
func startRedisNode(ctx context.Context, server, dir string) (*process, string, error) {
	var lastErr error
	for range 3 {
		port, err := freePort(redisPortLow, redisPortHigh, redisBusOffset)
		if err != nil {
			return nil, "", err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if err := mkdirAll(dir); err != nil {
			return nil, "", err
		}
		cmd := exec.Command(server,
			"--port", strconv.Itoa(port),
			"--bind", "127.0.0.1",
			"--protected-mode", "no",
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000",
			"--dir", dir,
			"--save", "",
			"--appendonly", "no",
			// Replicas link at once instead of after the default 5 s batching delay.
			"--repl-diskless-sync-delay", "0",
			"--daemonize", "no",
		)
		p, err := startProcess("redis-server "+addr, cmd, filepath.Join(dir, "redis.log"))
		if err != nil {
			return nil, "", err
		}
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
		err = waitFor(ctx, p, 50*time.Millisecond, func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
		_ = rdb.Close()
		if err == nil {
			return p, addr, nil
		}
		_ = p.stop(syscall.SIGKILL, time.Second)
		lastErr = err
	}
	return nil, "", lastErr
}

// waitHealthy waits until every node sees the whole cluster: state ok, all slots
// assigned and six known nodes, and every replica linked to its master.
func (c *RedisCluster) waitHealthy(ctx context.Context) error {
	for _, addr := range c.Addrs {
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		err := waitFor(ctx, nil, 100*time.Millisecond, func(ctx context.Context) error {
			info, err := rdb.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_known_nodes:" + strconv.Itoa(redisClusterNodes)} {
				if !strings.Contains(info, want) {
					return fmt.Errorf("%s: cluster info lacks %q", addr, want)
				}
			}
			repl, err := rdb.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return errors.New(addr + ": replica not linked to its master yet")
			}
			return nil
		})
		_ = rdb.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Masters returns the addresses of the nodes that currently serve slots as masters.
func (c *RedisCluster) Masters(ctx context.Context) ([]string, error) {
	var masters []string
	for _, addr := range c.Addrs {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		role, err := rdb.Do(ctx, "ROLE").Slice()
		_ = rdb.Close()
		if err != nil {
			return nil, fmt.Errorf("role of %s: %w", addr, err)
		}
		if len(role) > 0 && role[0] == "master" {
			masters = append(masters, addr)
		}
	}
	return masters, nil
}
