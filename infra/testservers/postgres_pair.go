package testservers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresInstallHint is the command that installs the PostgreSQL server binaries.
const PostgresInstallHint = "apt-get install -y postgresql-15 (binaries under /usr/lib/postgresql/15/bin; or set MEDIAMESH_PG_BINDIR)"

// PostgresServer is one private PostgreSQL server on 127.0.0.1 with trust
// authentication for the user postgres.
type PostgresServer struct {
	// Port is the server's TCP port on 127.0.0.1.
	Port int
	// DataDir is the server's data directory (owned by the postgres user when the
	// tests run as root).
	DataDir string
	name    string
	bin     string
	cred    *syscall.Credential
	logPath string

	mu   sync.Mutex
	proc *process
}

// URL is a connection URL for database on this server.
func (s *PostgresServer) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, database)
}

// PostgresPair is a primary and a streaming replica made from it with
// `pg_basebackup -R`, both stopped and removed at the test's cleanup.
type PostgresPair struct {
	Primary *PostgresServer
	Replica *PostgresServer
}

// serverSettings are passed to both servers with -c. Durability is traded for speed
// (fsync off): these clusters live for one test. Unix sockets are off so that the
// private servers never touch the shared socket directory of the machine's own
// PostgreSQL.
func serverSettings(port int) []string {
	settings := []string{
		"listen_addresses=127.0.0.1",
		"port=" + strconv.Itoa(port),
		"unix_socket_directories=",
		"fsync=off",
		"synchronous_commit=off",
		"full_page_writes=off",
		"shared_buffers=16MB",
		"max_connections=50",
		"wal_level=replica",
		"max_wal_senders=4",
		"hot_standby=on",
		"hot_standby_feedback=on",
		"wal_receiver_status_interval=1s",
		"logging_collector=off",
	}
	args := make([]string, 0, 2*len(settings))
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	return args
}

// StartPostgresPair initialises a primary with initdb, starts it, clones it with
// `pg_basebackup -R -X stream`, starts the clone as a hot standby, and waits until
// the primary reports it streaming. The binaries come from MEDIAMESH_PG_BINDIR or
// the newest /usr/lib/postgresql/*/bin; when the test runs as root they run as the
// postgres user (initdb refuses root). It takes about 3–6 s.
func StartPostgresPair(t testing.TB) *PostgresPair {
	t.Helper()
	bin, err := postgresBinDir()
	if err != nil {
		t.Fatalf("%v: %s", err, PostgresInstallHint)
	}
	cred, err := postgresCredential()
	if err != nil {
		t.Fatal(err)
	}
	base, err := postgresBaseDir(t.TempDir(), cred)
	if err != nil {
		t.Fatal(err)
	}
	pair := &PostgresPair{
		Primary: &PostgresServer{name: "primary", bin: bin, cred: cred, DataDir: filepath.Join(base, "primary"), logPath: filepath.Join(base, "primary.log")},
		Replica: &PostgresServer{name: "replica", bin: bin, cred: cred, DataDir: filepath.Join(base, "replica"), logPath: filepath.Join(base, "replica.log")},
	}
	t.Cleanup(func() {
		for _, s := range []*PostgresServer{pair.Replica, pair.Primary} {
			if err := s.Stop(); err != nil {
				t.Errorf("stop postgres %s: %v", s.name, err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	if out, err := pair.Primary.run(ctx, "initdb", "-D", pair.Primary.DataDir, "--username=postgres", "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	if err := pair.Primary.startOnFreePort(ctx); err != nil {
		t.Fatalf("start primary: %v", err)
	}
	if out, err := pair.Replica.run(ctx, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(pair.Primary.Port), "-U", "postgres",
		"-D", pair.Replica.DataDir, "-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	if err := pair.Replica.startOnFreePort(ctx); err != nil {
		t.Fatalf("start replica: %v", err)
	}
	if err := pair.waitStreaming(ctx); err != nil {
		t.Fatalf("replica is not streaming: %v\nreplica log:\n%s", err, fileTail(pair.Replica.logPath, 2000))
	}
	return pair
}

// postgresBinDir finds initdb, pg_basebackup and postgres.
func postgresBinDir() (string, error) {
	if d := os.Getenv("MEDIAMESH_PG_BINDIR"); d != "" {
		return d, checkPostgresBinaries(d)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return pgMajor(b) - pgMajor(a) })
	for _, d := range dirs {
		if checkPostgresBinaries(d) == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_basebackup, postgres) not found under /usr/lib/postgresql/*/bin")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func checkPostgresBinaries(dir string) error {
	for _, b := range []string{"initdb", "pg_basebackup", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("%s: %w", b, err)
		}
	}
	return nil
}

// postgresCredential is the postgres user when running as root (initdb and the
// server refuse root), nil otherwise (the servers run as the current user).
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres user to run initdb (%w): %s", err, PostgresInstallHint)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("postgres user ids: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// postgresBaseDir makes a directory under tmp that the servers' user owns. A
// t.TempDir() and its parent are private to root (0700), so the path is opened for
// traversal (0711) when the servers run as postgres.
func postgresBaseDir(tmp string, cred *syscall.Credential) (string, error) {
	base := filepath.Join(tmp, "pg")
	if err := os.Mkdir(base, 0o700); err != nil {
		return "", fmt.Errorf("postgres base dir: %w", err)
	}
	if cred == nil {
		return base, nil
	}
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o711); err != nil {
			return "", fmt.Errorf("open %s for the postgres user: %w", d, err)
		}
	}
	if err := os.Chown(base, int(cred.Uid), int(cred.Gid)); err != nil {
		return "", fmt.Errorf("chown %s to postgres: %w", base, err)
	}
	return base, nil
}

// prepare sets a PostgreSQL tool's environment and user: the servers' user (the
// postgres user under root) and a minimal, fixed environment.
func (s *PostgresServer) prepare(cmd *exec.Cmd) *exec.Cmd {
	cmd.Env = []string{"PATH=" + s.bin + ":/usr/bin:/bin", "LC_ALL=C", "TZ=UTC", "HOME=" + filepath.Dir(s.DataDir)}
	cmd.Dir = filepath.Dir(s.DataDir)
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// run runs a PostgreSQL tool to completion and returns its output.
func (s *PostgresServer) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return s.prepare(exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)).CombinedOutput()
}

// startOnFreePort starts the server on a spare port, trying another port if the
// chosen one is taken by the time the server binds.
func (s *PostgresServer) startOnFreePort(ctx context.Context) error {
	var lastErr error
	for range 3 {
		port, err := freePort(pgPortLow, pgPortHigh, 0)
		if err != nil {
			return err
		}
		s.Port = port
		if lastErr = s.Start(ctx); lastErr == nil {
			return nil
		}
	}
	return lastErr
}

// Start starts the server on its port and waits until it accepts connections. It
// also restarts a server that Stop stopped.
func (s *PostgresServer) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return fmt.Errorf("postgres %s is already running", s.name)
	}
	args := append([]string{"-D", s.DataDir}, serverSettings(s.Port)...)
	p, err := startProcess("postgres "+s.name, s.prepare(exec.Command(filepath.Join(s.bin, "postgres"), args...)), s.logPath)
	if err != nil {
		return err
	}
	s.proc = p
	err = waitFor(ctx, p, 50*time.Millisecond, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
	if err != nil {
		_ = p.stop(syscall.SIGQUIT, 5*time.Second)
		return err
	}
	return nil
}

// Stop shuts the server down fast (SIGINT: active sessions are disconnected) and
// waits for it. Stopping a stopped server is a no-op.
func (s *PostgresServer) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	return s.proc.stop(syscall.SIGINT, 20*time.Second)
}

// waitStreaming waits until the primary reports the replica streaming.
func (p *PostgresPair) waitStreaming(ctx context.Context) error {
	return waitFor(ctx, nil, 50*time.Millisecond, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, p.Primary.URL("postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%d streaming replicas, want 1", n)
		}
		return nil
	})
}

// WaitReplayed waits until the replica has replayed everything the primary had
// written when it was called, so a read on the replica sees every write committed
// before. It never returns while replay is paused; bound it with ctx.
func (p *PostgresPair) WaitReplayed(ctx context.Context) error {
	primary, err := pgx.Connect(ctx, p.Primary.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to primary: %w", err)
	}
	// The insert position, not the write position: with synchronous_commit off a
	// committed transaction's commit record can still be unwritten.
	var lsn string
	err = primary.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn)
	_ = primary.Close(ctx)
	if err != nil {
		return fmt.Errorf("primary wal position: %w", err)
	}
	replica, err := pgx.Connect(ctx, p.Replica.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to replica: %w", err)
	}
	defer replica.Close(ctx)
	for {
		var done bool
		if err := replica.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn).Scan(&done); err != nil {
			return fmt.Errorf("replica replay position: %w", err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for replica to replay %s: %w", lsn, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PauseReplay stops the replica applying WAL (it keeps receiving it), so a test can
// tell the replica from the primary: a row written after PauseReplay returns is on
// the primary only until ResumeReplay. It waits until the pause has taken effect
// (pg_wal_replay_pause only requests it).
func (p *PostgresPair) PauseReplay(ctx context.Context) error {
	if err := p.replicaExec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, p.Replica.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to replica: %w", err)
	}
	defer conn.Close(ctx)
	return waitFor(ctx, nil, 10*time.Millisecond, func(ctx context.Context) error {
		var state string
		if err := conn.QueryRow(ctx, "SELECT pg_get_wal_replay_pause_state()").Scan(&state); err != nil {
			return err
		}
		if state != "paused" {
			return fmt.Errorf("replay pause state %q", state)
		}
		return nil
	})
}

// ResumeReplay undoes PauseReplay.
func (p *PostgresPair) ResumeReplay(ctx context.Context) error {
	return p.replicaExec(ctx, "SELECT pg_wal_replay_resume()")
}

func (p *PostgresPair) replicaExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, p.Replica.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to replica: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("replica: %s: %w", sql, err)
	}
	return nil
}
