package app

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/zeebo/xxh3"
)

// Response is a rendered discovery answer, shared read-only by every request that
// the caches answer with it: the JSON body, its strong ETag and, made once on
// demand, its compressed variants.
//
// Decisions:
//   - The ETag is a 128-bit xxh3 hash of the body: strong (any change of the bytes
//     changes it), and cheap enough to compute on every render. It is not a MAC; it
//     only has to tell representations apart.
//   - Rendering happens once per cache fill, never per request: a cached answer is
//     a few header writes and a body pointer.
type Response struct {
	// Body is the JSON document; never modify it.
	Body []byte
	// ETag is the quoted strong entity tag of Body.
	ETag string
	// Snapshot is the state the answer was read from.
	Snapshot Snapshot
	// Version is the program stream version a by-id answer reflects (0 for lists
	// and for answers that name no program).
	Version int64
	// ProgramID is the program an episode answer belongs to ("" when unknown).
	ProgramID string
	// BaseDependent is true when the body holds asset URLs built from the
	// request's base URL: a cache must then key it by that base.
	BaseDependent bool

	variants [numEncodings]atomic.Pointer[[]byte]
}

// Encoding names a compressed variant of a Response.
type Encoding int

// Encodings a Response can memoize.
const (
	EncodingGzip Encoding = iota
	EncodingBrotli
	numEncodings
)

// NewResponse returns a Response over body (which it keeps).
func NewResponse(body []byte, snap Snapshot) *Response {
	h := xxh3.Hash128(body).Bytes()
	return &Response{Body: body, ETag: `"` + hex.EncodeToString(h[:]) + `"`, Snapshot: snap}
}

// render marshals v into a Response.
func render(v any, snap Snapshot) (*Response, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("render response: %w", err)
	}
	return NewResponse(b, snap), nil
}

// Variant returns the body encoded by encode as enc, computing it on the first call
// only (two racing first calls may both encode; one result wins and is kept). The
// api uses it to serve compressed bodies without compressing per request.
func (r *Response) Variant(enc Encoding, encode func([]byte) []byte) []byte {
	if p := r.variants[enc].Load(); p != nil {
		return *p
	}
	b := encode(r.Body)
	if r.variants[enc].CompareAndSwap(nil, &b) {
		return b
	}
	return *r.variants[enc].Load()
}

// Answer is what a discovery query returns: the rendered response and the position
// to report in X-Projection-Position (the serving projection's highest known
// position when the answer was served, which may be above the response's own).
type Answer struct {
	*Response
	Position int64
	// Consistent is true when the answer was checked against a consistency token.
	Consistent bool
}
