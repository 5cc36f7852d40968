// Package testservers starts real servers from this machine's binaries for tests
// that need more than the shared PostgreSQL and Redis on their default ports: a
// six-node Redis Cluster (StartRedisCluster) and a PostgreSQL primary with a
// streaming read replica (StartPostgresPair).
//
// Decisions:
//   - Every server listens on 127.0.0.1 on a port below 32768: ports from 32768 up
//     are the kernel's ephemeral range, where old client sockets can hold a port
//     that looked free a moment earlier. A port is probed before use and a server
//     that still fails to bind is started again on another one.
//   - Servers run in the foreground as children of the test process, with their
//     logs in files under t.TempDir(); a start-up failure quotes the log's tail.
//     Each child gets SIGKILL when the test process dies (Pdeathsig), so an
//     interrupted `go test` leaves no server behind.
//   - Everything is stopped at the test's cleanup, before its temporary
//     directories are removed.
//   - A missing binary fails the test with the command that installs it: these
//     tests never skip.
package testservers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Port ranges. A Redis Cluster node also binds its bus port, port+10000, so Redis
// client ports stay below 22768; PostgreSQL uses a range of its own.
const (
	redisPortLow, redisPortHigh = 12000, 16000
	pgPortLow, pgPortHigh       = 16000, 22000
	redisBusOffset              = 10000
)

// freePort returns a port in [low, high) on which 127.0.0.1 accepts a listener now
// (and, when also > 0, at port+also too). It is a probe, not a reservation: the
// caller retries on another port if its server still fails to bind.
func freePort(low, high, also int) (int, error) {
	for range 200 {
		p := low + rand.IntN(high-low)
		if !canListen(p) || (also > 0 && !canListen(p+also)) {
			continue
		}
		return p, nil
	}
	return 0, fmt.Errorf("no free port in [%d, %d) after 200 tries", low, high)
}

func canListen(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// process is a server running in the foreground as a child of the test process.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	mu      sync.Mutex
	waitErr error
}

// startProcess starts cmd with its output appended to logPath. cmd.SysProcAttr may
// carry credentials; Pdeathsig is added here.
func startProcess(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, cmd.Path, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		_ = logFile.Close()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to grace for the exit, then kills. Stopping an exited
// process is a no-op.
func (p *process) stop(sig os.Signal, grace time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: signal: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return fmt.Errorf("%s: did not stop within %s and was killed", p.name, grace)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s: did not exit after SIGKILL", p.name)
	}
}

// logTail is the end of the process's log, for error messages.
func (p *process) logTail() string { return fileTail(p.logPath, 2000) }

func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// waitFor polls check every interval until it returns nil, p exits, or ctx ends.
// The error names the last failure.
func waitFor(ctx context.Context, p *process, interval time.Duration, check func(context.Context) error) error {
	var last error
	for {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited during start-up: %w\n%s", p.name, errors.Join(last, errExited), p.logTail())
		}
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(attempt)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

var errExited = errors.New("process exited")

func mkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}
