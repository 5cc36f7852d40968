package fs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mediamesh/mediamesh/infra/blob"
	"github.com/mediamesh/mediamesh/infra/blob/blobtest"
	blobfs "github.com/mediamesh/mediamesh/infra/blob/fs"
)

func TestContract(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) blobtest.Store {
		s, err := blobfs.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestStaysUnderRoot checks that nothing is written outside the root, whatever the
// key, and that no temporary file is left behind.
func TestStaysUnderRoot(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	root := filepath.Join(parent, "blobs")
	s, err := blobfs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range []string{"../outside", "a/../../outside", "/tmp/outside", "..", "a/./b"} {
		if err := s.Put(ctx, k, []byte("x"), "text/plain"); !errors.Is(err, blob.ErrInvalidKey) {
			t.Fatalf("put %q: %v", k, err)
		}
	}
	if err := s.Put(ctx, "originals/abc.jpg", []byte("jpeg"), "image/jpeg"); err != nil {
		t.Fatal(err)
	}
	var files []string
	err = filepath.WalkDir(parent, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, strings.TrimPrefix(p, parent))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0] != filepath.FromSlash("/blobs/originals/abc.jpg") {
		t.Fatalf("files under the parent: %v", files)
	}
}

// TestDamagedFile checks that a file that is not a blob file (written by someone
// else, or cut short) is an error, not garbage served as an object.
func TestDamagedFile(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	s, err := blobfs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "cut.bin", []byte("0123456789"), "application/octet-stream"); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "cut.bin")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b[:len(b)-3], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "plain.jpg"), []byte("not a blob file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cut.bin", "plain.jpg"} {
		if _, err := s.Read(ctx, k); err == nil || errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("read %s: %v, want a damage error", k, err)
		}
	}
}
