// Package blob holds what MediaMesh's blob store adapters share: object metadata,
// the error values, and the one rule for keys. The adapters are infra/blob/fs (the
// embedded default, files under the data dir) and infra/blob/s3 (any S3-compatible
// service); both pass the contract suite in infra/blob/blobtest.
//
// Decisions:
//   - Objects are small and bounded (an original is at most the upload limit, a
//     rendition far less), so Put takes the bytes: the adapter hashes them before it
//     writes (the S3 adapter sends the hash as object metadata) and can retry.
//   - Every object's Info carries ETag, a strong validator of its content: the hex
//     SHA-256 the adapter computed on Put. HTTP delivery uses it as the ETag, so the
//     same bytes have the same ETag whichever adapter stores them.
//   - A key is a relative slash-separated path of plain segments (see ValidKey). The
//     rule is the same for every adapter and rejects anything that could walk out of
//     the filesystem adapter's root, whatever the caller passes.
//   - ErrNotFound wraps io/fs.ErrNotExist, so the command and projection packages,
//     which may not import infra, recognize a missing object with the standard
//     library alone.
package blob

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// ErrNotFound: no object under the key. errors.Is(err, fs.ErrNotExist) holds too.
var ErrNotFound = fmt.Errorf("blob not found: %w", fs.ErrNotExist)

// ErrInvalidKey: the key breaks ValidKey's rule; nothing was read or written.
var ErrInvalidKey = errors.New("invalid blob key")

// ErrInvalidRange: a range that does not lie within the object.
var ErrInvalidRange = errors.New("invalid byte range")

// MaxKeyLen bounds a key; MaxSegmentLen bounds each of its segments.
const (
	MaxKeyLen     = 1024
	MaxSegmentLen = 255
)

// Info describes a stored object.
type Info struct {
	Key string
	// Size is the whole object's size in bytes (also for a ranged Get).
	Size        int64
	ContentType string
	// ETag is a strong validator of the content, without quotes: the hex SHA-256 of
	// the bytes for every object written by Put.
	ETag    string
	ModTime time.Time
}

// Range is a part of an object: Length bytes from Offset. The zero Range (Length 0)
// means the whole object.
type Range struct {
	Offset, Length int64
}

// Whole reports whether r means the whole object.
func (r Range) Whole() bool { return r.Offset == 0 && r.Length == 0 }

// Check returns ErrInvalidRange unless r lies within an object of size bytes.
func (r Range) Check(size int64) error {
	if r.Whole() {
		return nil
	}
	if r.Offset < 0 || r.Length <= 0 || r.Offset >= size || r.Length > size-r.Offset {
		return fmt.Errorf("bytes %d+%d of %d: %w", r.Offset, r.Length, size, ErrInvalidRange)
	}
	return nil
}

// ValidKey returns an error wrapping ErrInvalidKey unless key is 1–MaxKeyLen bytes
// of segments separated by single slashes, each segment 1–MaxSegmentLen bytes of
// ASCII letters, digits, '.', '_' and '-' that does not start with a dot. So there
// is no absolute path, no empty, "." or ".." segment, no backslash, no control or
// non-ASCII byte, and no hidden name (the filesystem adapter's temporary files start
// with a dot, so a key can never name one).
func ValidKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("key of %d bytes (1–%d): %w", len(key), MaxKeyLen, ErrInvalidKey)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || len(seg) > MaxSegmentLen || seg[0] == '.' {
			return fmt.Errorf("key %s: empty, over-long or dot segment: %w", strconv.Quote(key), ErrInvalidKey)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("key %s: byte %q not allowed: %w", strconv.Quote(key), c, ErrInvalidKey)
			}
		}
	}
	return nil
}
