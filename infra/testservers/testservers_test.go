package testservers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

func TestFreePort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		low, high, also int
	}{
		{"redis client and bus ports stay below the ephemeral range", redisPortLow, redisPortHigh, redisBusOffset},
		{"postgres ports stay below the ephemeral range", pgPortLow, pgPortHigh, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for range 20 {
				p, err := freePort(tt.low, tt.high, tt.also)
				if err != nil {
					t.Fatal(err)
				}
				if p < tt.low || p >= tt.high || p+tt.also >= 32768 {
					t.Fatalf("port %d (+%d) outside [%d, %d) or not below 32768", p, tt.also, tt.low, tt.high)
				}
			}
		})
	}
	t.Run("a held port is not returned", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		held := ln.Addr().(*net.TCPAddr).Port
		if _, err := freePort(held, held+1, 0); err == nil {
			t.Fatalf("freePort returned the held port %d", held)
		}
	})
}

func TestProcessStopKillsAStubbornChild(t *testing.T) {
	t.Parallel()
	// sh ignores SIGTERM here, so stop must fall back to SIGKILL and say so.
	log := t.TempDir() + "/log"
	p, err := startProcess("stubborn", exec.Command("sh", "-c", "trap '' TERM; echo trapped; while :; do sleep 1; done"), log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := waitFor(ctx, p, 10*time.Millisecond, func(context.Context) error {
		if !strings.Contains(fileTail(log, 100), "trapped") {
			return errors.New("trap not installed yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	err = p.stop(syscall.SIGTERM, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("stop = %v, want a killed error", err)
	}
	if !p.exited() {
		t.Fatal("process still running after stop")
	}
	if err := p.stop(syscall.SIGTERM, time.Second); err != nil {
		t.Fatalf("second stop = %v, want nil", err)
	}
}

func TestStartRedisCluster(t *testing.T) {
	t.Parallel()
	c := StartRedisCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if len(c.Addrs) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Addrs))
	}
	for _, a := range c.Addrs {
		_, port, _ := net.SplitHostPort(a)
		if p, _ := strconv.Atoi(port); p+redisBusOffset >= 32768 {
			t.Errorf("node %s: port or bus port in the ephemeral range", a)
		}
	}
	masters, err := c.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(masters) != 3 {
		t.Fatalf("masters %v, want 3", masters)
	}
	// Every master has exactly one replica.
	for _, m := range masters {
		rdb := redis.NewClient(&redis.Options{Addr: m})
		repl, err := rdb.Info(ctx, "replication").Result()
		_ = rdb.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(repl, "connected_slaves:1") {
			t.Errorf("master %s: %s", m, repl)
		}
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	defer cc.Close()
	if err := cc.Set(ctx, "testservers:probe", "1", time.Minute).Err(); err != nil {
		t.Fatalf("cluster write: %v", err)
	}
	if got, err := cc.Get(ctx, "testservers:probe").Result(); err != nil || got != "1" {
		t.Fatalf("cluster read = %q, %v", got, err)
	}
}

func TestStartPostgresPair(t *testing.T) {
	t.Parallel()
	pair := StartPostgresPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	primary := connect(ctx, t, pair.Primary.URL("postgres"))
	replica := connect(ctx, t, pair.Replica.URL("postgres"))
	for _, s := range []*PostgresServer{pair.Primary, pair.Replica} {
		if s.Port >= 32768 {
			t.Errorf("%s on port %d, in the ephemeral range", s.name, s.Port)
		}
	}
	if inRecovery(ctx, t, primary) || !inRecovery(ctx, t, replica) {
		t.Fatal("want the primary out of recovery and the replica in recovery")
	}

	if _, err := primary.Exec(ctx, "CREATE TABLE probe (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	t.Run("a write on the primary reaches the replica", func(t *testing.T) {
		if _, err := primary.Exec(ctx, "INSERT INTO probe VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		if err := pair.WaitReplayed(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(ctx, t, replica); n != 1 {
			t.Fatalf("replica has %d rows, want 1", n)
		}
	})
	t.Run("the replica refuses writes", func(t *testing.T) {
		_, err := replica.Exec(ctx, "INSERT INTO probe VALUES (2)")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "25006" { // read_only_sql_transaction
			t.Fatalf("insert on replica = %v, want SQLSTATE 25006", err)
		}
	})
	t.Run("paused replay tells the replica from the primary", func(t *testing.T) {
		if err := pair.PauseReplay(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := primary.Exec(ctx, "INSERT INTO probe VALUES (3)"); err != nil {
			t.Fatal(err)
		}
		short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
		err := pair.WaitReplayed(short)
		cancelShort()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitReplayed while paused = %v, want a deadline", err)
		}
		if n := count(ctx, t, replica); n != 1 {
			t.Fatalf("replica has %d rows while paused, want 1", n)
		}
		if err := pair.ResumeReplay(ctx); err != nil {
			t.Fatal(err)
		}
		if err := pair.WaitReplayed(ctx); err != nil {
			t.Fatal(err)
		}
		if n := count(ctx, t, replica); n != 2 {
			t.Fatalf("replica has %d rows after resume, want 2", n)
		}
	})
	t.Run("a stopped replica refuses connections and restarts streaming", func(t *testing.T) {
		if err := pair.Replica.Stop(); err != nil {
			t.Fatal(err)
		}
		if conn, err := pgx.Connect(ctx, pair.Replica.URL("postgres")); err == nil {
			_ = conn.Close(ctx)
			t.Fatal("connected to a stopped replica")
		}
		if _, err := primary.Exec(ctx, "INSERT INTO probe VALUES (4)"); err != nil {
			t.Fatalf("primary with its replica down: %v", err)
		}
		if err := pair.Replica.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := pair.waitStreaming(ctx); err != nil {
			t.Fatal(err)
		}
		if err := pair.WaitReplayed(ctx); err != nil {
			t.Fatal(err)
		}
		again := connect(ctx, t, pair.Replica.URL("postgres"))
		if n := count(ctx, t, again); n != 3 {
			t.Fatalf("restarted replica has %d rows, want 3", n)
		}
	})
}

func connect(ctx context.Context, t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func inRecovery(ctx context.Context, t *testing.T, conn *pgx.Conn) bool {
	t.Helper()
	var r bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func count(ctx context.Context, t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM probe").Scan(&n); err != nil {
		t.Fatal(fmt.Errorf("count probe rows: %w", err))
	}
	return n
}
