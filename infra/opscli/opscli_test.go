package opscli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/opscli"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// fakeAdmin scripts a rebuild: each Progress call advances it by a step until it
// completes (or fails, when fail is set).
type fakeAdmin struct {
	mu       sync.Mutex
	calls    int
	fail     bool
	replayed string
}

func (a *fakeAdmin) Status(context.Context) ([]rebuild.Status, error) {
	return []rebuild.Status{
		{Name: "catalog", Version: 1, Status: "retiring", Rebuildable: true, Position: 100, HeadPosition: 300, LagEvents: 2, LagSeconds: 1.25},
		{Name: "catalog", Version: 2, Status: "serving", Rebuildable: true, Position: 300, HeadPosition: 300},
		{Name: "engagement", Version: 1, Status: "running"},
	}, nil
}

func (a *fakeAdmin) StartRebuild(_ context.Context, name string) (string, error) {
	if name != "catalog" {
		return "", rebuild.ErrNotRebuildable
	}
	return "r-1", nil
}

func (a *fakeAdmin) Progress(context.Context, string) (rebuild.Progress, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	p := rebuild.Progress{RebuildID: "r-1", Status: rebuild.RebuildRunning, Processed: int64(a.calls-1) * 250, Total: 1000,
		FromVersion: 1, ToVersion: 2}
	if a.calls == 1 {
		p.Total = 0 // not picked up yet
	}
	if a.calls >= 5 {
		p.Processed = 1000
		p.Status = rebuild.RebuildCompleted
		if a.fail {
			p.Status, p.Error = rebuild.RebuildFailed, "prepare version 2: disk full"
		}
	}
	return p, nil
}

func (a *fakeAdmin) DeadLetters(_ context.Context, name string, limit int) ([]runtime.DeadLetter, error) {
	return []runtime.DeadLetter{{Projection: "catalog", Version: 1, Position: 42, Type: "mediamesh.program.created.v1",
		StreamID: "program-1", StreamVersion: 1, Error: "poison event:\n cannot decode", Attempts: 3,
		FailedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}, nil
}

func (a *fakeAdmin) Replay(_ context.Context, name string) (runtime.ReplayResult, error) {
	a.replayed = name
	return runtime.ReplayResult{Replayed: 2, Remaining: 1}, nil
}

func run(t *testing.T, a *fakeAdmin, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := opscli.Projections(ctx, &out, &errOut, a, args)
	return out.String(), errOut.String(), err
}

func TestStatusTable(t *testing.T) {
	t.Parallel()
	out, _, err := run(t, &fakeAdmin{}, "status")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{"NAME", "VERSION", "STATUS", "REBUILDABLE", "POSITION", "HEAD", "LAG EVENTS", "LAG SECONDS", "DEAD LETTERS"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header lacks %s: %s", want, lines[0])
		}
	}
	if f := strings.Fields(lines[1]); len(f) != 9 || f[0] != "catalog" || f[2] != "retiring" || f[6] != "2" || f[7] != "1.2" {
		t.Errorf("row: %q", lines[1])
	}
	if !strings.Contains(lines[3], "engagement") || !strings.Contains(lines[3], " no ") {
		t.Errorf("row: %q", lines[3])
	}
	out, _, err = run(t, &fakeAdmin{}, "status", "--json")
	var rows []map[string]any
	if err != nil || json.Unmarshal([]byte(out), &rows) != nil || len(rows) != 3 || rows[0]["lag_events"] != 2.0 {
		t.Errorf("json: %v %s", err, out)
	}
}

func TestRebuildWaitShowsProgressUntilTheSwitch(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	a := &fakeAdmin{}
	p, err := opscli.WaitRebuild(context.Background(), &errOut, a, "catalog", "r-1", opscli.WaitOptions{Every: time.Millisecond, Unclaimed: time.Nanosecond})
	if err != nil || p.Status != rebuild.RebuildCompleted {
		t.Fatalf("wait: %+v %v", p, err)
	}
	bar := errOut.String()
	for _, want := range []string{"not been picked up", "rebuild catalog v1→v2", "1000/1000", "100%"} {
		if !strings.Contains(bar, want) {
			t.Errorf("progress output lacks %q:\n%s", want, bar)
		}
	}
	_ = out
	stdout, _, err := run(t, &fakeAdmin{}, "rebuild", "catalog", "--wait")
	if err != nil || !strings.Contains(stdout, "rebuild r-1 of catalog started") || !strings.Contains(stdout, "catalog v2 serves (1000 events replayed)") {
		t.Errorf("rebuild --wait: %v\n%s", err, stdout)
	}
	_, _, err = run(t, &fakeAdmin{fail: true}, "rebuild", "--wait", "catalog")
	if !errors.Is(err, opscli.ErrRebuildFailed) || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("failed rebuild: %v", err)
	}
	if _, _, err := run(t, &fakeAdmin{}, "rebuild", "engagement"); !errors.Is(err, rebuild.ErrNotRebuildable) {
		t.Errorf("not rebuildable: %v", err)
	}
}

func TestDeadLetterCommands(t *testing.T) {
	t.Parallel()
	a := &fakeAdmin{}
	out, _, err := run(t, a, "dlq", "list", "catalog", "--limit", "5")
	if err != nil || !strings.Contains(out, "program-1") || !strings.Contains(out, "poison event: cannot decode") {
		t.Errorf("dlq list: %v\n%s", err, out)
	}
	out, _, err = run(t, a, "dlq", "replay", "catalog")
	if err != nil || a.replayed != "catalog" || !strings.Contains(out, "2 dead letters replayed, 1 remain") {
		t.Errorf("dlq replay: %v %q", err, out)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"nope"}, {"rebuild"}, {"rebuild", "a", "b"}, {"dlq"}, {"dlq", "replay"}, {"dlq", "x"}, {"status", "--bogus"}} {
		_, errOut, err := run(t, &fakeAdmin{}, args...)
		if !errors.Is(err, opscli.ErrUsage) || !strings.Contains(errOut, "usage: mediamesh projections") {
			t.Errorf("%v: %v %q", args, err, errOut)
		}
	}
}
