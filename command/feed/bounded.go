package feed

import (
	"errors"
	"io"
)

// errTooLarge is returned by boundedReader once its reader reaches past its bound.
var errTooLarge = errors.New("too large")

// boundedReader hands its reader (the JSON decoder, csv.Reader) at most limit
// bytes in total, in chunks of at most readChunk, and counts what it handed over.
// Both parsers hold a whole element or record in memory, so they move limit after
// each one to allow the next its MaxLineBytes: the JSON parser to the decoder's
// position plus one element's allowance (its buffer, which holds a whole element
// or a whole run of whitespace, never grows past about MaxLineBytes+readChunk),
// the CSV parser after every record (plus csv.Reader's own 4 KiB read-ahead).
type boundedReader struct {
	r     io.Reader
	read  int64
	limit int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if len(p) > readChunk {
		p = p[:readChunk]
	}
	room := b.limit - b.read
	if room <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}
