// Package feed reads ingest feeds (API.md "Ingest feeds") as a stream of validated
// items: NDJSON (one program per line), a JSON array of programs, or CSV (one row
// per episode, rows of one program grouped by program_external_id).
//
// Memory is bounded whatever the input: a feed is never held whole, one NDJSON
// line, JSON array element or CSV record is read only up to Limits.MaxLineBytes (a
// CSV program's rows together up to Limits.MaxItemBytes), and nothing else is
// buffered beyond a small read-ahead.
//
// An item with any invalid field fails as a whole (Item.Problem) and the others go
// on. A problem that leaves the rest of the feed unreadable fails the feed instead
// (Next returns a *FeedError after the items before it): a JSON array that is not
// well-formed or never closes, an oversized array element or CSV record, a CSV syntax
// error. An NDJSON line never breaks the feed: lines are independent, so an overlong
// line is skipped (read through without being kept) and reported as its own item.
//
// Items are checked with the aggregate's own input rules (command/program's
// Normalize functions), plus what only a feed can get wrong: required fields, unknown
// fields (exact, case-sensitive names), invalid UTF-8, duplicate episode external ids
// or season/number pairs within one item.
package feed

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"
)

// Default limits.
const (
	DefaultMaxLineBytes = 1 << 20
	DefaultMaxItemBytes = 4 << 20
)

// maxProblemBytes bounds an item's problem text (it may quote input).
const maxProblemBytes = 1000

// Limits bound what one item may take; zero fields take the defaults.
type Limits struct {
	// MaxLineBytes bounds one NDJSON line, one JSON array element and one CSV
	// record (1 MiB).
	MaxLineBytes int
	// MaxItemBytes bounds the rows of one CSV program together (4 MiB).
	MaxItemBytes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxLineBytes <= 0 {
		l.MaxLineBytes = DefaultMaxLineBytes
	}
	if l.MaxItemBytes <= 0 {
		l.MaxItemBytes = DefaultMaxItemBytes
	}
	return l
}

// Content types of feeds.
const (
	ContentTypeNDJSON = "application/x-ndjson"
	ContentTypeJSON   = "application/json"
	ContentTypeCSV    = "text/csv"
)

var (
	// ErrUnsupportedContentType: the feed's content type is none of the three (415).
	ErrUnsupportedContentType = errors.New("unsupported content type")
	// ErrInvalidFeed: the feed cannot be read from its start (a CSV header that is
	// not API.md's, a JSON body that is not an array): nothing was accepted (400).
	ErrInvalidFeed = errors.New("invalid feed")
)

// FeedError is a problem that stops the feed after some items were read. Line is
// where it was found, in the feed's own numbering (NDJSON and CSV lines, JSON array
// element indexes), or 0 when no place applies.
type FeedError struct {
	Line    int64
	Message string
	// Err is the underlying error, if any (e.g. the body reader's).
	Err error
}

func (e *FeedError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("feed stopped at line %d: %s", e.Line, e.Message)
	}
	return "feed stopped: " + e.Message
}

func (e *FeedError) Unwrap() error { return e.Err }

// Program is one item of a feed. Optional fields are pointers: nil means absent,
// and an absent field leaves the stored value as it is. It marshals to the item's
// JSON form (API.md), which is also how it travels on the ingest queue.
type Program struct {
	ExternalID  string    `json:"external_id"`
	Title       string    `json:"title"`
	Description *string   `json:"description,omitempty"`
	Category    string    `json:"category"`
	Language    string    `json:"language"`
	Tags        *[]string `json:"tags,omitempty"`
	Published   *bool     `json:"published,omitempty"`
	Episodes    []Episode `json:"episodes,omitempty"`
}

// Episode is one episode of a feed item, matched by ExternalID within its program.
type Episode struct {
	ExternalID      string  `json:"external_id"`
	Title           string  `json:"title"`
	Number          int     `json:"number"`
	Season          *int    `json:"season,omitempty"`
	Description     *string `json:"description,omitempty"`
	DurationSeconds int     `json:"duration_seconds"`
	Published       *bool   `json:"published,omitempty"`

	// line is the CSV line of the episode's row (0 for JSON forms), for messages.
	line int64
}

// Item is one program of a feed, valid or not.
type Item struct {
	// Index counts the feed's items from 0, in feed order.
	Index int
	// Line is API.md's "line": the 1-based NDJSON line, the 1-based JSON array
	// element index, or the CSV line of the program's first row (the header is 1).
	Line int64
	// ExternalID is the program's external id as far as it could be read ("" when
	// even that failed).
	ExternalID string
	// Program is the item; meaningful only when Problem is "".
	Program Program
	// Problem says why the item is invalid; "" for a valid item.
	Problem string
}

// Parser reads a feed's items one at a time. It is not safe for concurrent use.
type Parser struct {
	next  func() (Item, error)
	index int
}

// NewParser checks the content type and the start of the feed (CSV header, JSON
// array opening) and returns a parser positioned on the first item. It fails with
// ErrUnsupportedContentType or ErrInvalidFeed (wrapped, with the reason) before
// consuming more than the start; an error of r is returned wrapped as it is.
func NewParser(contentType string, r io.Reader, lim Limits) (*Parser, error) {
	kind, err := Kind(contentType)
	if err != nil {
		return nil, err
	}
	lim = lim.withDefaults()
	br := bufio.NewReaderSize(r, readChunk)
	if err := skipBOM(br); err != nil {
		return nil, err
	}
	var next func() (Item, error)
	switch kind {
	case ContentTypeNDJSON:
		next = newNDJSON(br, lim)
	case ContentTypeJSON:
		next, err = newJSONArray(br, lim)
	case ContentTypeCSV:
		next, err = newCSV(br, lim)
	}
	if err != nil {
		return nil, err
	}
	return &Parser{next: next}, nil
}

// Next returns the next item; io.EOF after the last one; a *FeedError (or the
// reader's error, wrapped) when the rest of the feed cannot be read. After an error
// Next keeps returning errors.
func (p *Parser) Next() (Item, error) {
	it, err := p.next()
	if err != nil {
		p.next = func() (Item, error) { return Item{}, err }
		return Item{}, err
	}
	it.Index = p.index
	p.index++
	if it.Problem == "" {
		it.Problem = validate(&it.Program)
	}
	it.Problem = truncate(it.Problem, maxProblemBytes)
	if !utf8.ValidString(it.ExternalID) {
		it.ExternalID = strings.ToValidUTF8(it.ExternalID, "\uFFFD")
	}
	it.ExternalID = truncate(it.ExternalID, 4*maxExternalIDRunes)
	return it, nil
}

// Kind returns the canonical content type of a feed's Content-Type header, or
// ErrUnsupportedContentType. Parameters other than charset are ignored; a charset
// other than UTF-8 is refused (feeds are UTF-8, API.md).
func Kind(contentType string) (string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", fmt.Errorf("content type %q: %w", contentType, ErrUnsupportedContentType)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return "", fmt.Errorf("charset %q, feeds are UTF-8: %w", cs, ErrUnsupportedContentType)
	}
	switch mt {
	case ContentTypeNDJSON, "application/ndjson", "application/jsonl":
		return ContentTypeNDJSON, nil
	case ContentTypeJSON:
		return ContentTypeJSON, nil
	case ContentTypeCSV:
		return ContentTypeCSV, nil
	}
	return "", fmt.Errorf("content type %q, want %s, %s or %s: %w", mt, ContentTypeNDJSON, ContentTypeJSON, ContentTypeCSV, ErrUnsupportedContentType)
}

// readChunk is the read-ahead of the feed's buffered reader and the most any
// parser reads past what it has consumed.
const readChunk = 64 << 10

func skipBOM(br *bufio.Reader) error {
	b, err := br.Peek(3)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("read feed: %w", err)
	}
	if len(b) == 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		_, _ = br.Discard(3)
	}
	return nil
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
