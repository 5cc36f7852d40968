package feed

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// newJSONArray reads "[" at once (ErrInvalidFeed otherwise) and then one element per
// call with json.Decoder's Token/More streaming. Element k (from 1) is line k. An
// element larger than MaxLineBytes that still decodes is an invalid item; one that
// reaches past the decoder's bound, malformed JSON and an array that never closes
// end the feed with a *FeedError.
func newJSONArray(br *bufio.Reader, lim Limits) (func() (Item, error), error) {
	src := &boundedReader{r: br}
	dec := json.NewDecoder(src)
	allow := int64(lim.MaxLineBytes) + readChunk
	bound := func() { src.limit = dec.InputOffset() + allow }

	bound()
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("empty body, want a JSON array of programs: %w", ErrInvalidFeed)
		}
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, errTooLarge) {
			return nil, fmt.Errorf("want a JSON array of programs: %w", ErrInvalidFeed)
		}
		return nil, fmt.Errorf("read feed: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("want a JSON array of programs, got %s: %w", describeToken(tok), ErrInvalidFeed)
	}

	var element int64
	done := false
	fail := func(err error, at int64, what string) (Item, error) {
		var se *json.SyntaxError
		switch {
		case errors.Is(err, errTooLarge):
			return Item{}, &FeedError{Line: at, Message: fmt.Sprintf("element %d is larger than %d bytes", at, lim.MaxLineBytes)}
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return Item{}, &FeedError{Line: at, Message: "the feed ends inside the JSON array: it is not closed with ]"}
		case errors.As(err, &se):
			return Item{}, &FeedError{Line: at, Message: fmt.Sprintf("invalid JSON %s: %v", what, se)}
		}
		return Item{}, &FeedError{Line: at, Message: "reading the feed failed", Err: err}
	}
	return func() (Item, error) {
		if done {
			return Item{}, io.EOF
		}
		bound()
		if !dec.More() {
			// More is false at "]" and at the end of input; Token tells them apart.
			tok, err := dec.Token()
			if err != nil {
				return fail(err, element+1, "after element "+fmt.Sprint(element))
			}
			if d, ok := tok.(json.Delim); !ok || d != ']' {
				return Item{}, &FeedError{Line: element + 1, Message: fmt.Sprintf("want , or ] after element %d, got %s", element, describeToken(tok))}
			}
			bound()
			if _, err := dec.Token(); !errors.Is(err, io.EOF) {
				return Item{}, &FeedError{Line: element, Message: "data after the end of the JSON array"}
			}
			done = true
			return Item{}, io.EOF
		}
		element++
		bound()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fail(err, element, fmt.Sprintf("in element %d", element))
		}
		if len(raw) > lim.MaxLineBytes {
			return Item{Line: element, ExternalID: externalIDHint(raw[:min(len(raw), 4096)]), Problem: fmt.Sprintf("element is larger than %d bytes (%d)", lim.MaxLineBytes, len(raw))}, nil
		}
		p, ext, problem := parseJSONItem(raw)
		return Item{Line: element, ExternalID: ext, Program: p, Problem: problem}, nil
	}, nil
}

func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", string(v))
	case string:
		return "a string"
	case nil:
		return "null"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}
