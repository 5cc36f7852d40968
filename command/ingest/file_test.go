package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/command/feed"
	"github.com/mediamesh/mediamesh/command/ingest"
)

func TestContentTypeOf(t *testing.T) {
	t.Parallel()
	tests := []struct{ path, want string }{
		{"a.ndjson", "application/x-ndjson"},
		{"dir.v2/A.JSONL", "application/x-ndjson"},
		{"a.json", "application/json"},
		{"a.csv", "text/csv"},
		{"a.txt", ""},
		{"ndjson", ""},
	}
	for _, tc := range tests {
		got, err := ingest.ContentTypeOf(tc.path)
		if got != tc.want || (tc.want == "") != errors.Is(err, ingest.ErrUnsupportedContentType) {
			t.Errorf("ContentTypeOf(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
}

// TestDemoFeed: the demo catalog is valid for the feed parser, deterministic per
// seed, independent of its length (a shorter one is a prefix of a longer one), and
// looks like a catalog: published programs with 2–6 published episodes, several
// categories and languages.
func TestDemoFeed(t *testing.T) {
	t.Parallel()
	gen := func(n int, seed int64) []byte {
		t.Helper()
		var b bytes.Buffer
		if err := ingest.DemoFeed(&b, n, seed); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a, again, other, long := gen(200, 7), gen(200, 7), gen(200, 8), gen(400, 7)
	if !bytes.Equal(a, again) {
		t.Fatal("the same seed gave different feeds")
	}
	if bytes.Equal(a, other) {
		t.Fatal("different seeds gave the same feed")
	}
	if !bytes.HasPrefix(long, a) {
		t.Fatal("a longer feed does not extend a shorter one")
	}
	p, err := feed.NewParser("application/x-ndjson", bytes.NewReader(a), feed.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	cats, langs, ids := map[string]bool{}, map[string]bool{}, map[string]bool{}
	n := 0
	for {
		it, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if it.Problem != "" {
			t.Fatalf("item %d is invalid: %s", it.Index, it.Problem)
		}
		pr := it.Program
		if ids[pr.ExternalID] {
			t.Fatalf("external id %s repeats", pr.ExternalID)
		}
		ids[pr.ExternalID] = true
		cats[pr.Category], langs[pr.Language] = true, true
		if pr.Published == nil || !*pr.Published || len(pr.Episodes) < 2 || len(pr.Episodes) > 6 || pr.Tags == nil || len(*pr.Tags) == 0 {
			t.Fatalf("program %+v", pr)
		}
		for _, e := range pr.Episodes {
			if e.Published == nil || !*e.Published {
				t.Fatalf("episode %+v not published", e)
			}
		}
	}
	if n != 200 || len(cats) < 8 || len(langs) < 6 {
		t.Fatalf("%d programs, %d categories, %d languages", n, len(cats), len(langs))
	}
	if err := ingest.DemoFeed(io.Discard, -1, 1); err == nil {
		t.Fatal("negative count accepted")
	}
}

// TestSubmitFile: `mediamesh ingest FILE` submits through the ingest path, shows
// progress and returns the finished job; seeding the same demo catalog again
// changes nothing.
func TestSubmitFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{})
	e.startWorker(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "demo.ndjson")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ingest.DemoFeed(f, 40, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var progress bytes.Buffer
	job, err := ingest.SubmitFile(ctx, e.svc, path, "seed", &progress)
	if err != nil {
		t.Fatal(err)
	}
	if job.Status != ingest.StatusCompleted || job.Total != 40 || job.Succeeded != 40 {
		t.Fatalf("job %s", summary(job))
	}
	if !strings.Contains(progress.String(), "demo.ndjson") || !strings.Contains(progress.String(), "40/40") {
		t.Fatalf("progress output %q", progress.String())
	}
	before := sumCounts(e.eventCounts(t))
	if before == 0 {
		t.Fatal("no events appended")
	}
	job, err = ingest.SubmitFile(ctx, e.svc, path, "seed", nil)
	if err != nil || job.Succeeded != 40 {
		t.Fatalf("second seed: %s, %v", summary(job), err)
	}
	if after := sumCounts(e.eventCounts(t)); after != before {
		t.Fatalf("seeding again appended %d events", after-before)
	}

	if _, err := ingest.SubmitFile(ctx, e.svc, filepath.Join(dir, "feed.txt"), "seed", nil); !errors.Is(err, ingest.ErrUnsupportedContentType) {
		t.Fatalf("a .txt file: %v", err)
	}
	if _, err := ingest.SubmitFile(ctx, e.svc, filepath.Join(dir, "missing.csv"), "seed", nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: %v", err)
	}
}
