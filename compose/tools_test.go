package compose_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tools these checks run. A missing one fails the test with the command that
// installs it (the lead's .ci/run installs the Debian packages when missing).
const (
	nginxInstall    = "apt-get install -y nginx"
	promtoolInstall = "apt-get install -y prometheus"
)

// lookTool returns the path of a tool or fails with how to install it.
func lookTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (%v); install it with: %s", name, err, install)
	}
	return p
}

// k6Version is the pinned k6 release (compose/k6/k6-version.txt, which
// scripts/loadtest-smoke.sh installs too).
func k6Version(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("k6", "k6-version.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// lookK6 finds k6 on PATH or in $(go env GOPATH)/bin.
func lookK6(t *testing.T) string {
	t.Helper()
	install := "go install go.k6.io/k6@" + k6Version(t)
	if p, err := exec.LookPath("k6"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", "k6")
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p
			}
		}
	}
	t.Fatalf("k6 is not installed (neither on PATH nor in $(go env GOPATH)/bin); install it with: %s (about 2 minutes)", install)
	return ""
}

// run runs a tool to completion within a bounded time and returns its combined
// output; a failure fails the test with that output.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, nil, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(err, ctx.Err())
	}
	return out.String(), err
}

// moduleRoot is the repository's root (this package is compose/).
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}
