// Package mediamesh_test guards the import rules of STYLE.md: what may import what.
// It reads the real dependency graph with `go list -deps`, so a new import that
// crosses a boundary fails here instead of eroding the layout.
package mediamesh_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/mediamesh/mediamesh"

type pkg struct {
	ImportPath string
	Imports    []string
}

// ownImports lists every non-test package of the module with its direct imports of
// the module's own packages.
func ownImports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	res := map[string][]string{}
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		var own []string
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module+"/") {
				own = append(own, strings.TrimPrefix(imp, module+"/"))
			}
		}
		res[rel] = own
	}
	return res
}

func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

func TestImportBoundaries(t *testing.T) {
	t.Parallel()
	graph := ownImports(t)
	if len(graph) < 3 {
		t.Fatalf("go list found only %d packages", len(graph))
	}
	type rule struct {
		from   string
		allows func(imp string) bool
		why    string
	}
	rules := []rule{
		{"events", func(string) bool { return false }, "events imports nothing of ours"},
		{"command/program", func(imp string) bool { return imp == "events" }, "aggregates import only events"},
		{"command", func(imp string) bool { return imp == "events" || under(imp, "command") }, "command never imports infra, api, query or projections"},
		{"query", func(imp string) bool { return imp == "events" || under(imp, "query") }, "query never imports infra, api, command or projections"},
		{"projections", func(imp string) bool { return imp == "events" || under(imp, "projections") }, "projections never import infra, api, command or query"},
		{"api", func(imp string) bool { return !under(imp, "cmd") }, "only cmd/mediamesh is the composition root"},
		{"infra", func(imp string) bool { return !under(imp, "cmd") && !under(imp, "api") }, "adapters do not import the HTTP layer or the composition root"},
	}
	for pkgPath, imps := range graph {
		for _, r := range rules {
			if !under(pkgPath, r.from) {
				continue
			}
			for _, imp := range imps {
				if !r.allows(imp) {
					t.Errorf("%s imports %s: %s", pkgPath, imp, r.why)
				}
			}
		}
	}
}
