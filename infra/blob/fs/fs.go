// Package fs is the filesystem blob store, the embedded default: one file per
// object under a root directory (MEDIAMESH_DATA_DIR/blobs by default).
//
// Decisions:
//   - Each file holds a small header — a magic line and the object's metadata
//     (content type, SHA-256, size) as JSON — followed by the bytes. Metadata and
//     content live in one file, so one rename replaces both at once: a reader that
//     opened the file sees one object, whole, with its own ETag, however often the
//     key is replaced meanwhile. (The price: the files are not plain images; read
//     them through the store.)
//   - Put writes a temporary file in the target directory, syncs it, renames it over
//     the key's path and syncs the directory: readers see the old object or the new
//     one, never a partial one, and a crash leaves at worst a temporary file (their
//     names start with a dot, which no valid key can name).
//   - Keys are checked with blob.ValidKey before any path is built, and the built
//     path is checked to lie under the root; nothing can escape it.
package fs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mediamesh/mediamesh/infra/blob"
)

// magic starts every object file; the version lets the format change later.
const magic = "MMBLOB1\n"

// maxHeader bounds the metadata JSON (a content type and a hash need far less).
const maxHeader = 4096

// header is the metadata stored before the bytes.
type header struct {
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
}

// Store is a blob store on a directory. It is safe for concurrent use, also by
// several processes sharing the directory.
type Store struct {
	root string
}

// New returns a store under root, creating the directory when missing.
func New(root string) (*Store, error) {
	if root == "" {
		return nil, errors.New("blob fs: empty root directory")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("blob fs: root %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("blob fs: create root: %w", err)
	}
	return &Store{root: abs}, nil
}

// Root is the directory the store writes under.
func (s *Store) Root() string { return s.root }

// path returns the file of key after checking the key.
func (s *Store) path(key string) (string, error) {
	if err := blob.ValidKey(key); err != nil {
		return "", err
	}
	p := filepath.Join(s.root, filepath.FromSlash(key))
	if !strings.HasPrefix(p, s.root+string(filepath.Separator)) {
		return "", fmt.Errorf("key %q leaves the root: %w", key, blob.ErrInvalidKey)
	}
	return p, nil
}

// Put stores data under key atomically (see the package documentation).
func (s *Store) Put(ctx context.Context, key string, data []byte, contentType string) (err error) {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	sum := sha256.Sum256(data)
	meta, err := json.Marshal(header{ContentType: contentType, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data))})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if len(meta) > maxHeader {
		return fmt.Errorf("put %s: content type too long", key)
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var lenBuf [4]byte
	binary.BigEndian.PutUint32(lenBuf[:], uint32(len(meta)))
	for _, part := range [][]byte{[]byte(magic), lenBuf[:], meta, data} {
		if _, err = tmp.Write(part); err != nil {
			return fmt.Errorf("put %s: write: %w", key, err)
		}
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("put %s: sync: %w", key, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("put %s: close: %w", key, err)
	}
	if err = ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err = os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("put %s: rename: %w", key, err)
	}
	// The rename is durable once the directory is synced. A failure here leaves the
	// object in place, only maybe not yet on disk: report it all the same.
	if d, derr := os.Open(dir); derr == nil {
		derr = d.Sync()
		d.Close()
		if derr != nil {
			return fmt.Errorf("put %s: sync directory: %w", key, derr)
		}
	}
	return nil
}

// object is an open object file positioned after its header.
type object struct {
	f    *os.File
	info blob.Info
	off  int64 // where the bytes start
}

func (s *Store) open(ctx context.Context, key string) (*object, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	f, err := os.Open(p)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", key, blob.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("open %s: a directory: %w", key, blob.ErrNotFound)
	}
	h, off, err := readHeader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", key, err)
	}
	if off+h.Size != st.Size() {
		f.Close()
		return nil, fmt.Errorf("open %s: file has %d bytes, header says %d+%d", key, st.Size(), off, h.Size)
	}
	return &object{f: f, off: off, info: blob.Info{Key: key, Size: h.Size, ContentType: h.ContentType, ETag: h.SHA256, ModTime: st.ModTime().UTC()}}, nil
}

func readHeader(f *os.File) (header, int64, error) {
	pre := make([]byte, len(magic)+4)
	if _, err := io.ReadFull(f, pre); err != nil {
		return header{}, 0, fmt.Errorf("read header: %w", err)
	}
	if !bytes.Equal(pre[:len(magic)], []byte(magic)) {
		return header{}, 0, errors.New("not a blob file (bad magic)")
	}
	n := binary.BigEndian.Uint32(pre[len(magic):])
	if n > maxHeader {
		return header{}, 0, fmt.Errorf("header of %d bytes", n)
	}
	meta := make([]byte, n)
	if _, err := io.ReadFull(f, meta); err != nil {
		return header{}, 0, fmt.Errorf("read header: %w", err)
	}
	var h header
	if err := json.Unmarshal(meta, &h); err != nil {
		return header{}, 0, fmt.Errorf("decode header: %w", err)
	}
	return h, int64(len(pre)) + int64(n), nil
}

// Read returns a whole object.
func (s *Store) Read(ctx context.Context, key string) ([]byte, error) {
	o, err := s.open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer o.f.Close()
	buf := make([]byte, o.info.Size)
	if _, err := io.ReadFull(io.NewSectionReader(o.f, o.off, o.info.Size), buf); err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return buf, nil
}

// Stat describes an object.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	o, err := s.open(ctx, key)
	if err != nil {
		return blob.Info{}, err
	}
	o.f.Close()
	return o.info, nil
}

// Get returns the bytes of rng from one open file, with that file's Info.
func (s *Store) Get(ctx context.Context, key string, rng blob.Range) (io.ReadCloser, blob.Info, error) {
	o, err := s.open(ctx, key)
	if err != nil {
		return nil, blob.Info{}, err
	}
	if err := rng.Check(o.info.Size); err != nil {
		o.f.Close()
		return nil, blob.Info{}, fmt.Errorf("get %s: %w", key, err)
	}
	off, n := rng.Offset, rng.Length
	if rng.Whole() {
		off, n = 0, o.info.Size
	}
	return readCloser{Reader: io.NewSectionReader(o.f, o.off+off, n), Closer: o.f}, o.info, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Delete removes an object; a missing one is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if st, err := os.Lstat(p); err == nil && st.IsDir() {
		return nil // a prefix of other keys, not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
