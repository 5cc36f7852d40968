// Package blobtest is the contract suite of MediaMesh's blob store port. Every
// adapter (infra/blob/fs, infra/blob/s3) runs Run, so the upload handler, the
// thumbnail processor and /media delivery rely on the same behaviour whichever store
// a deployment uses.
//
// The suite never assumes it owns the store: every subtest writes under its own
// random prefix, so subtests run in parallel and may share one store.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/infra/blob"
)

// Store is the blob store port: what every adapter implements, exactly. The users
// declare the subsets they need (command/app and projections/thumbnails: Put and
// Read; api: Stat and Get).
type Store interface {
	// Put stores data under key with its content type, replacing any object there.
	// Readers see the old object or the new one, never a mix or a partial object.
	Put(ctx context.Context, key string, data []byte, contentType string) error
	// Read returns a whole object.
	Read(ctx context.Context, key string) ([]byte, error)
	// Stat describes an object without reading it.
	Stat(ctx context.Context, key string) (blob.Info, error)
	// Get returns the bytes of rng (the whole object for the zero Range) with the
	// Info of the object they come from; the caller closes the reader. A range
	// outside the object is an error wrapping blob.ErrInvalidRange.
	Get(ctx context.Context, key string, rng blob.Range) (io.ReadCloser, blob.Info, error)
	// Delete removes an object; a missing one is not an error.
	Delete(ctx context.Context, key string) error
}

// Run runs the whole suite; newStore returns the store under test for one subtest.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store, prefix string)
	}{
		{"PutThenReadStatGet", testPutRead},
		{"ReplaceIsWhole", testReplace},
		{"EmptyObject", testEmpty},
		{"Ranges", testRanges},
		{"NotFound", testNotFound},
		{"InvalidKeys", testInvalidKeys},
		{"Delete", testDelete},
		{"ConcurrentReplaceNeverTorn", testConcurrentReplace},
		{"CancelledContext", testCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t), randomPrefix(t))
		})
	}
}

func randomPrefix(t *testing.T) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "suite-" + hex.EncodeToString(b[:]) + "/"
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t *testing.T, s Store, key string, data []byte, ct string) {
	t.Helper()
	if err := s.Put(ctxT(t), key, data, ct); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func readAll(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}

func checkInfo(t *testing.T, what string, got blob.Info, key string, data []byte, ct string, since time.Time) {
	t.Helper()
	if got.Key != key || got.Size != int64(len(data)) || got.ContentType != ct || got.ETag != sum(data) {
		t.Fatalf("%s: info %+v, want key %s size %d type %s etag %s", what, got, key, len(data), ct, sum(data))
	}
	// Clocks of a remote store may differ a little; a day's tolerance still catches
	// a zero or nonsense time.
	if got.ModTime.IsZero() || got.ModTime.Before(since.Add(-24*time.Hour)) || got.ModTime.After(time.Now().Add(24*time.Hour)) {
		t.Fatalf("%s: mod time %v", what, got.ModTime)
	}
}

func testPutRead(t *testing.T, s Store, prefix string) {
	ctx := ctxT(t)
	start := time.Now()
	tests := []struct {
		key, ct string
		size    int
	}{
		{prefix + "originals/abc.jpg", "image/jpeg", 70_000},
		{prefix + "assets/a-1/small.webp", "image/webp", 1},
		{prefix + "x_y.Z-9.bin", "application/octet-stream", 3 << 20},
	}
	for _, tc := range tests {
		data := randomBytes(t, tc.size)
		mustPut(t, s, tc.key, data, tc.ct)
		got, err := s.Read(ctx, tc.key)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %s: %d bytes, err %v; want %d bytes", tc.key, len(got), err, len(data))
		}
		info, err := s.Stat(ctx, tc.key)
		if err != nil {
			t.Fatalf("stat %s: %v", tc.key, err)
		}
		checkInfo(t, "stat "+tc.key, info, tc.key, data, tc.ct, start)
		rc, ginfo, err := s.Get(ctx, tc.key, blob.Range{})
		if err != nil {
			t.Fatalf("get %s: %v", tc.key, err)
		}
		if body := readAll(t, rc); !bytes.Equal(body, data) {
			t.Fatalf("get %s: %d bytes, want %d", tc.key, len(body), len(data))
		}
		checkInfo(t, "get "+tc.key, ginfo, tc.key, data, tc.ct, start)
	}
}

func testReplace(t *testing.T, s Store, prefix string) {
	ctx := ctxT(t)
	key := prefix + "assets/a/large.jpg"
	first, second := randomBytes(t, 50_000), randomBytes(t, 1_000)
	mustPut(t, s, key, first, "image/jpeg")
	mustPut(t, s, key, second, "image/webp")
	got, err := s.Read(ctx, key)
	if err != nil || !bytes.Equal(got, second) {
		t.Fatalf("after replace read %d bytes (%v), want the second object's %d", len(got), err, len(second))
	}
	info, err := s.Stat(ctx, key)
	if err != nil || info.ETag != sum(second) || info.Size != int64(len(second)) || info.ContentType != "image/webp" {
		t.Fatalf("after replace stat %+v %v", info, err)
	}
}

func testEmpty(t *testing.T, s Store, prefix string) {
	ctx := ctxT(t)
	key := prefix + "empty"
	mustPut(t, s, key, nil, "application/octet-stream")
	got, err := s.Read(ctx, key)
	if err != nil || len(got) != 0 {
		t.Fatalf("read empty: %q %v", got, err)
	}
	info, err := s.Stat(ctx, key)
	if err != nil || info.Size != 0 || info.ETag != sum(nil) {
		t.Fatalf("stat empty: %+v %v", info, err)
	}
	if _, _, err := s.Get(ctx, key, blob.Range{Offset: 0, Length: 1}); !errors.Is(err, blob.ErrInvalidRange) {
		t.Fatalf("range of an empty object: %v, want ErrInvalidRange", err)
	}
}

func testRanges(t *testing.T, s Store, prefix string) {
	ctx := ctxT(t)
	key := prefix + "ranged.bin"
	data := randomBytes(t, 10_000)
	mustPut(t, s, key, data, "application/octet-stream")
	ok := []blob.Range{{Offset: 0, Length: 1}, {Offset: 0, Length: 10_000}, {Offset: 9_999, Length: 1}, {Offset: 1_234, Length: 5_000}, {Offset: 5_000, Length: 5_000}}
	for _, r := range ok {
		rc, info, err := s.Get(ctx, key, r)
		if err != nil {
			t.Fatalf("get %+v: %v", r, err)
		}
		if body := readAll(t, rc); !bytes.Equal(body, data[r.Offset:r.Offset+r.Length]) {
			t.Fatalf("get %+v: %d bytes differ from the object's", r, len(body))
		}
		if info.Size != int64(len(data)) || info.ETag != sum(data) {
			t.Fatalf("get %+v: info %+v, want the whole object's size and etag", r, info)
		}
	}
	bad := []blob.Range{{Offset: 10_000, Length: 1}, {Offset: 0, Length: 10_001}, {Offset: 9_999, Length: 2}, {Offset: -1, Length: 5}, {Offset: 5, Length: -1}, {Offset: 20_000, Length: 10}}
	for _, r := range bad {
		rc, _, err := s.Get(ctx, key, r)
		if err == nil {
			rc.Close()
		}
		if !errors.Is(err, blob.ErrInvalidRange) {
			t.Fatalf("get %+v: err %v, want ErrInvalidRange", r, err)
		}
	}
}

func testNotFound(t *testing.T, s Store, prefix string) {
	ctx := ctxT(t)
	key := prefix + "nothing/here.jpg"
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, blob.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s of a missing key: %v, want ErrNotFound (and fs.ErrNotExist)", op, err)
		}
	}
	_, err := s.Read(ctx, key)
	check("read", err)
	_, err = s.Stat(ctx, key)
	check("stat", err)
	rc, _, err := s.Get(ctx, key, blob.Range{})
	if err == nil {
		rc.Close()
	}
	check("get", err)
	rc, _, err = s.Get(ctx, key, blob.Range{Offset: 1, Length: 1})
	if err == nil {
		rc.Close()
	}
	check("ranged get", err)
	// A directory-like prefix of stored keys is not an object either.
	mustPut(t, s, prefix+"dir/file", []byte("x"), "text/plain")
	_, err = s.Read(ctx, prefix+"dir")
	check("read of a prefix", err)
}

func testInvalidKeys(t *testing.T, s Store, prefix string) {
	ctx := ctxT(t)
	keys := []string{
		"", "/abs", "../escape", prefix + "../../escape", prefix + "a/../../b", "a//b", "a/", prefix + ".hidden",
		prefix + "./x", "a\\..\\b", "a\x00b", "caf\u00e9", prefix + "sp ace", "..", ".", string(make([]byte, blob.MaxKeyLen+1)),
	}
	for _, k := range keys {
		err := s.Put(ctx, k, []byte("x"), "text/plain")
		if !errors.Is(err, blob.ErrInvalidKey) {
			t.Fatalf("put %q: %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Read(ctx, k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Fatalf("read %q: %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Stat(ctx, k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Fatalf("stat %q: %v, want ErrInvalidKey", k, err)
		}
		if rc, _, err := s.Get(ctx, k, blob.Range{}); !errors.Is(err, blob.ErrInvalidKey) {
			if err == nil {
				rc.Close()
			}
			t.Fatalf("get %q: %v, want ErrInvalidKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, blob.ErrInvalidKey) {
			t.Fatalf("delete %q: %v, want ErrInvalidKey", k, err)
		}
	}
}

func testDelete(t *testing.T, s Store, prefix string) {
	ctx := ctxT(t)
	key := prefix + "gone.jpg"
	mustPut(t, s, key, []byte("bytes"), "image/jpeg")
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("stat after delete: %v", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("delete of a missing key: %v", err)
	}
}

// testConcurrentReplace replaces one key over and over while readers read it: every
// read must return one of the written objects whole, with its own etag.
func testConcurrentReplace(t *testing.T, s Store, prefix string) {
	ctx := ctxT(t)
	key := prefix + "hot.bin"
	versions := make([][]byte, 4)
	byETag := map[string][]byte{}
	for i := range versions {
		versions[i] = randomBytes(t, 20_000+i*7_000)
		byETag[sum(versions[i])] = versions[i]
	}
	mustPut(t, s, key, versions[0], "application/octet-stream")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			if err := s.Put(ctx, key, versions[i%len(versions)], "application/octet-stream"); err != nil {
				report(err)
				return
			}
		}
		close(stop)
	}()
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rc, info, err := s.Get(ctx, key, blob.Range{})
				if err != nil {
					report(err)
					return
				}
				body, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					report(err)
					return
				}
				want, ok := byETag[info.ETag]
				if !ok || !bytes.Equal(body, want) || sum(body) != info.ETag {
					report(errors.New("a read returned a torn object or an etag of other bytes"))
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

func testCancelled(t *testing.T, s Store, prefix string) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	key := prefix + "cancelled.bin"
	if err := s.Put(ctx, key, []byte("x"), "text/plain"); err == nil {
		t.Fatal("put with a cancelled context succeeded")
	}
	if _, err := s.Stat(ctxT(t), key); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("a cancelled put left an object: %v", err)
	}
}
