package feed

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// newNDJSON reads one item per line. Blank lines are skipped (they still count as
// lines). A line longer than MaxLineBytes is read through without being kept and
// becomes an invalid item; the feed goes on with the next line.
func newNDJSON(br *bufio.Reader, lim Limits) func() (Item, error) {
	var line int64
	buf := make([]byte, 0, 4096)
	return func() (Item, error) {
		for {
			var (
				tooLong bool
				n       int
				err     error
			)
			buf, n, tooLong, err = readLine(br, buf[:0], lim.MaxLineBytes)
			if n == 0 && errors.Is(err, io.EOF) {
				return Item{}, io.EOF
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return Item{}, &FeedError{Line: line + 1, Message: "reading the feed failed", Err: err}
			}
			line++
			if tooLong {
				return Item{Line: line, Problem: fmt.Sprintf("line is longer than %d bytes (%d)", lim.MaxLineBytes, n)}, nil
			}
			text := bytes.TrimSpace(buf)
			if len(text) == 0 {
				continue
			}
			p, ext, problem := parseJSONItem(text)
			return Item{Line: line, ExternalID: ext, Program: p, Problem: problem}, nil
		}
	}
}

// readLine appends the next line (without its "\n") to buf, keeping at most max
// bytes: a longer line is consumed to its end but not kept (tooLong). n is the
// line's full length; err is io.EOF at the end of input (possibly after a last line
// without "\n").
func readLine(br *bufio.Reader, buf []byte, max int) (_ []byte, n int, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		n += len(chunk)
		if !tooLong {
			if len(buf)+len(chunk) > max+1 { // +1: the "\n" itself is not content
				tooLong, buf = true, buf[:0]
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == nil:
			n--
			if !tooLong {
				buf = buf[:len(buf)-1]
			}
			return buf, n, tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return buf, n, tooLong, err
		}
	}
}
