package compose_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDockerfile checks, without a Docker engine, what the image promises: the
// binary is built with CGO disabled and with build tags under which none of its
// dependencies links libc (runtime/cgo, or purego's fake cgo, would make it
// dynamically linked, and distroless/static has no libc to load); the last stage
// is distroless static running as a non-root user; the entry point is the binary
// the build stage copies in.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	root := moduleRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)

	build := regexp.MustCompile(`CGO_ENABLED=0 GOOS=linux \\\s*\n\s*go build (-tags (\S+) )?.*-o (\S+) (\./cmd/mediamesh)`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("Dockerfile: no `CGO_ENABLED=0 GOOS=linux go build … -o OUT ./cmd/mediamesh` step")
	}
	tags, out := build[2], build[3]
	args := []string{"list", "-deps"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, "./cmd/mediamesh")
	deps, err := runErr(root, append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"), "go", args...)
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, deps)
	}
	for _, pkg := range strings.Fields(deps) {
		if pkg == "runtime/cgo" || strings.HasPrefix(pkg, "github.com/ebitengine/purego") {
			t.Errorf("the image's binary depends on %s with tags %q: it would be dynamically linked, and distroless/static has no libc", pkg, tags)
		}
	}

	stages := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
	if len(stages) == 0 || !strings.HasPrefix(stages[len(stages)-1][1], "gcr.io/distroless/static") {
		t.Errorf("final stage %v, want gcr.io/distroless/static", stages)
	}
	final := df[strings.LastIndex(df, "\nFROM "):]
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(final)
	if user == nil || strings.HasPrefix(user[1], "0") || strings.HasPrefix(user[1], "root") {
		t.Errorf("final stage runs as %v, want a non-root user", user)
	}
	copied := regexp.MustCompile(`(?m)^COPY --from=build ` + regexp.QuoteMeta(out) + ` (\S+)$`).FindStringSubmatch(final)
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"\]`).FindStringSubmatch(final)
	if copied == nil || entry == nil || copied[1] != entry[1] {
		t.Errorf("entry point %v does not run the binary copied to %v", entry, copied)
	}

	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(ignore), "\n")
	for _, needed := range []string{"cmd", "go.mod", "go.sum", "migrations", "infra", "api"} {
		if slices.Contains(lines, needed) {
			t.Errorf(".dockerignore excludes %s, which the build needs", needed)
		}
	}
}
