package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/mediamesh/mediamesh/command/ingest"
)

// Ingest is what POST /v1/ingest and GET /v1/ingest/{job_id} call;
// *ingest.Service implements it.
type Ingest interface {
	// Submit reads a whole feed from body (see ingest.Service.Submit for its
	// errors) and returns its job id.
	Submit(ctx context.Context, contentType string, body io.Reader, actor string) (string, error)
	// GetJob returns a job or ingest.ErrJobNotFound.
	GetJob(ctx context.Context, jobID string) (ingest.Job, error)
	// MaxFeedBytes is the largest feed Submit reads.
	MaxFeedBytes() int64
}

// ingestPath is the one route whose body is streamed (see bufferBodies).
const ingestPath = "/v1/ingest"

// ingestBodyDone marks, in a request's Locals, that the ingest handler read the
// body to its end.
type ingestBodyDone struct{}

// streamBodies turns on fasthttp's request-body streaming when the ingest route is
// served, and keeps every other route as it was without it.
//
// Why: a feed may be up to a gigabyte (API.md), and without streaming fasthttp
// reads every body whole into memory before any handler runs. fiber v2 has no
// per-route switch, so streaming is global, and two pieces restore, for every other
// route, exactly what fasthttp did before:
//
//   - headerReceived refuses a declared Content-Length above the route's limit from
//     the headers alone. With streaming on, fasthttp would otherwise wait for the
//     first 8 KiB of the body before running any handler, and a client that sends
//     its headers and waits for the verdict would hang until the read timeout.
//   - bufferBodies reads the body of every route but POST /v1/ingest into memory up
//     to Config.BodyLimit (a chunked body growing past it is 413), so Body() stays
//     bounded (fasthttp's Body() reads a streamed body of any size) and no body is
//     left unread, to be parsed as the next request on the connection.
func (s *server) streamBodies(f *fiber.App) {
	if s.deps.Ingest == nil {
		return
	}
	if s.deps.Tokens == nil {
		panic("api: Deps.Tokens is required to serve /v1/ingest")
	}
	f.Server().HeaderReceived = s.headerReceived
	f.Use(s.bufferBodies)
}

// headerOversize is set by headerReceived on a request whose declared body is above
// its route's limit; a client's own value is removed first.
const headerOversize = "X-Mediamesh-Oversize"

// isIngestSubmit reports whether a request is POST /v1/ingest, from its raw
// method and path (as fiber matches routes: CaseSensitive, StrictRouting, the
// path not unescaped).
func isIngestSubmit(method, path []byte) bool {
	return string(method) == fiber.MethodPost && string(path) == ingestPath
}

// headerReceived runs after a request's headers are read, before its body: a
// declared length above the route's limit gets a Content-Length of 0 (nothing of
// the body is read), no "100 Continue", Connection: close (its body is never
// taken for a next request, whatever a handler does), and headerOversize, on which
// bufferBodies answers 413.
func (s *server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	h.Del(headerOversize)
	limit := int64(s.cfg.BodyLimit)
	path, _, _ := strings.Cut(string(h.RequestURI()), "?")
	if isIngestSubmit(h.Method(), []byte(path)) {
		limit = s.deps.Ingest.MaxFeedBytes()
	}
	if cl := h.ContentLength(); cl > 0 && int64(cl) > limit {
		h.Set(headerOversize, strconv.Itoa(cl))
		h.SetContentLength(0)
		h.Del(fiber.HeaderExpect)
		h.SetConnectionClose()
	}
	return fasthttp.RequestConfig{} // the server's own limits and timeouts
}

// bufferBodies answers 413 to a request headerReceived marked, and reads the body
// of every request but POST /v1/ingest into memory, bounded by Config.BodyLimit
// (see streamBodies).
func (s *server) bufferBodies(c *fiber.Ctx) error {
	req := c.Request()
	if len(req.Header.Peek(headerOversize)) > 0 {
		c.Context().SetConnectionClose()
		return fiber.ErrRequestEntityTooLarge
	}
	if !req.IsBodyStream() || isIngestSubmit(req.Header.Method(), req.URI().PathOriginal()) {
		return c.Next()
	}
	if req.Header.ContentLength() == 0 {
		return c.Next()
	}
	body, err := io.ReadAll(io.LimitReader(req.BodyStream(), int64(s.cfg.BodyLimit)+1))
	if err != nil {
		c.Context().SetConnectionClose()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fiber.ErrRequestTimeout
		}
		return fiber.ErrBadRequest
	}
	if len(body) > s.cfg.BodyLimit {
		c.Context().SetConnectionClose()
		return fiber.ErrRequestEntityTooLarge
	}
	req.SetBody(body) // releases the stream; Body() now returns these bytes
	return c.Next()
}

func (s *server) registerIngest(f *fiber.App) {
	ed := s.authorize(RoleEditor)
	s.post(f, ingestPath, s.closeUnreadIngest, ed, s.submitIngest)
	s.get(f, ingestPath+"/:job_id", ed, s.ingestJob)
}

// closeUnreadIngest closes the connection after a POST /v1/ingest whose body was
// not read to its end (refused before reading, or cut short): the unread rest of a
// streamed body would otherwise be taken for the next request.
func (s *server) closeUnreadIngest(c *fiber.Ctx) error {
	err := c.Next()
	if done, _ := c.Locals(ingestBodyDone{}).(bool); !done {
		c.Context().SetConnectionClose()
	}
	return err
}

// submitIngest is POST /v1/ingest. It answers 202 once the body is read (see
// command/ingest: the feed is validated and queued while it streams in). The
// problems:
//
//	415  Content-Type not a feed type, Content-Encoding other than identity
//	400  the feed is unreadable from its start (CSV header, not a JSON array); no job
//	413  declared or actual size above the limit; a job that already holds the items
//	     read before the limit is named in the detail and a Link header
//	408  the upload stalled longer than the read timeout
//	503  the job store or the queue failed (a job, if recorded, is named and failed)
//
// An item's own problems never fail the request: they are in the job.
//
// An Idempotency-Key is honoured as for commands (see idempotentIngest) by a
// server with an idempotency store (every server that serves commands has one).
func (s *server) submitIngest(c *fiber.Ctx) error {
	if ce := strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)); ce != "" && !strings.EqualFold(ce, "identity") {
		return errUnsupportedMediaType("Content-Encoding is not supported on requests")
	}
	// A declared length above the feed limit was refused by bufferBodies.
	var body io.Reader
	if c.Request().IsBodyStream() {
		body = c.Request().BodyStream()
	} else {
		body = strings.NewReader(string(c.Body()))
	}
	r := &deadlineReader{r: body, c: c, idle: s.cfg.ReadTimeout}
	if key := c.Get(HeaderIdempotencyKey); key != "" && s.deps.Idempotency != nil {
		return s.idempotentIngest(c, key, r)
	}
	resp, err := s.runIngest(c, r)
	if err != nil {
		return err
	}
	return sendStored(c, resp, false)
}

// runIngest submits the feed read from r and returns the 202 response, or the
// error to answer.
func (s *server) runIngest(c *fiber.Ctx, r *deadlineReader) (storedResponse, error) {
	ct := strings.Clone(c.Get(fiber.HeaderContentType))
	actor := principalOf(c).Subject
	id, err := s.deps.Ingest.Submit(c.UserContext(), ct, r, actor)
	if r.eof {
		c.Locals(ingestBodyDone{}, true)
	}
	if err != nil {
		return storedResponse{}, ingestProblem(c, id, err)
	}
	body, _ := json.Marshal(map[string]string{"job_id": id}) // a string always marshals
	return storedResponse{
		Status: http.StatusAccepted,
		Headers: map[string]string{
			fiber.HeaderContentType: fiber.MIMEApplicationJSON,
			fiber.HeaderLocation:    ingestPath + "/" + id,
		},
		Body: body,
	}, nil
}

// ingestIdempotencyLease is how long a POST /v1/ingest holds its Idempotency-Key
// against retries while it runs: an upload may take much longer than a command, and
// a retry that took the key over from a running upload would start a second job.
// The price: after a crash mid-upload a retry with the same key is 409 (in
// progress) until the lease ends; a new key submits at once.
const ingestIdempotencyLease = 30 * time.Minute

// idempotentIngest is POST /v1/ingest with an Idempotency-Key (API.md
// "Commands"): the same key and body as a completed submission answer its 202
// again (the same job, Idempotent-Replayed: true, nothing enqueued); the key with a
// different body, or while its first submission still runs, is 409.
//
// The body is streamed, so its hash is known only once it is read: the key is
// claimed first under the route's hash (a lock against concurrent retries), and
// the body's SHA-256, computed while Submit reads it, is stored with the response.
// A retry of a completed key reads its body only to hash it and compares. Only a
// 202 whose body was read to its end is kept; any other outcome releases the key,
// and a retry runs again (a refused feed is refused again; a job recorded before a
// failure stays, failed).
func (s *server) idempotentIngest(c *fiber.Ctx, key string, r *deadlineReader) error {
	if !validIdempotencyKey(key) {
		return errBadRequest("invalid header", FieldError{Field: HeaderIdempotencyKey, Message: "must be 1–255 visible ASCII characters"})
	}
	r.hash = sha256.New()
	scoped := scopedKey(principalOf(c).Subject, c.Method(), c.Route().Path, key)
	lock := requestHash(c.Method(), c.Path(), nil)
	claimID := newClaimID()
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
	defer cancel()
	lease := max(s.cfg.IdempotencyLease, ingestIdempotencyLease)
	claimed, storedHash, stored, err := s.deps.Idempotency.Claim(ctx, scoped, claimID, lock, lease, s.cfg.IdempotencyTTL)
	if err != nil {
		s.log.Error("claim idempotency key", slog.String("request_id", requestIDOf(c)), slog.String("error", err.Error()))
		return errUnavailable("the idempotency store is unavailable; retry later")
	}
	reused := &httpError{status: http.StatusConflict, kind: "idempotency-key-reused",
		detail: "this Idempotency-Key was used for a different request"}
	if !claimed {
		switch {
		case !bytes.Equal(storedHash, lock):
			return reused
		case stored == nil:
			return &httpError{status: http.StatusConflict, kind: "idempotency-key-in-progress",
				detail:  "a request with this Idempotency-Key is still in progress",
				headers: map[string]string{fiber.HeaderRetryAfter: "1"}}
		}
		var resp ingestStored
		if err := json.Unmarshal(stored, &resp); err != nil {
			return errors.Join(errInternal, err)
		}
		// Read the body only to compare it with the first one.
		limited := io.LimitReader(r, s.deps.Ingest.MaxFeedBytes()+1)
		n, err := io.Copy(io.Discard, limited)
		if r.eof || (err == nil && n <= s.deps.Ingest.MaxFeedBytes()) {
			c.Locals(ingestBodyDone{}, true)
		}
		switch {
		case err != nil:
			return ingestProblem(c, "", err)
		case n > s.deps.Ingest.MaxFeedBytes() || !bytes.Equal(r.hash.Sum(nil), resp.BodyHash):
			return reused
		}
		return sendStored(c, resp.storedResponse, true)
	}

	done := false
	defer func() {
		if !done { // Submit panicked: free the key at once rather than after the lease
			s.release(c, scoped, claimID)
		}
	}()
	resp, err := s.runIngest(c, r)
	done = true
	if err != nil || !r.eof {
		s.release(c, scoped, claimID)
		if err != nil {
			return err
		}
		return sendStored(c, resp, false)
	}
	data, merr := json.Marshal(ingestStored{storedResponse: resp, BodyHash: r.hash.Sum(nil)})
	if merr == nil {
		merr = s.deps.Idempotency.Complete(context.WithoutCancel(ctx), scoped, claimID, data)
	}
	if merr != nil {
		// The job exists; the client gets its id. A retry finds the claim held until
		// the lease ends, then submits again (a second job, which appends nothing new).
		s.log.Error("complete idempotency key", slog.String("request_id", requestIDOf(c)), slog.String("error", merr.Error()))
	}
	return sendStored(c, resp, false)
}

// ingestStored is a POST /v1/ingest response as its Idempotency-Key record keeps
// it: the response and the SHA-256 of the feed it answered.
type ingestStored struct {
	storedResponse
	BodyHash []byte `json:"body_hash"`
}

// ingestProblem maps Submit's errors (see submitIngest).
func ingestProblem(c *fiber.Ctx, jobID string, err error) error {
	job := ""
	if jobID != "" {
		job = " (job " + jobID + " holds the items read before)"
		c.Set(fiber.HeaderLink, "<"+ingestPath+"/"+jobID+`>; rel="related"`)
	}
	switch {
	case errors.Is(err, ingest.ErrUnsupportedContentType):
		return errUnsupportedMediaType("Content-Type must be application/x-ndjson, application/json or text/csv (UTF-8)")
	case errors.Is(err, ingest.ErrInvalidFeed) && jobID == "":
		return errBadRequest(err.Error())
	case errors.Is(err, ingest.ErrFeedTooLarge):
		return &httpError{status: http.StatusRequestEntityTooLarge, kind: "body-too-large",
			detail: "the feed is too large" + job}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &httpError{status: http.StatusRequestTimeout, kind: "timeout",
			detail: "the upload stalled" + job}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, context.Canceled):
		// The client went away mid-upload: the answer is for the log, if anyone.
		return &httpError{status: http.StatusBadRequest, kind: "bad-request",
			detail: "the upload was interrupted" + job}
	}
	// The job store or the queue failed: 503, with the cause in the log (the
	// error handler logs 5xx errors once, with their whole chain).
	return fmt.Errorf("%w: %w", errUnavailable("the ingest queue or job store is unavailable"+job), err)
}

// ingestJob is GET /v1/ingest/{job_id}.
func (s *server) ingestJob(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
	defer cancel()
	id := strings.Clone(c.Params("job_id"))
	job, err := s.deps.Ingest.GetJob(ctx, id)
	if errors.Is(err, ingest.ErrJobNotFound) {
		return errNotFound("no ingest job " + fmt.Sprintf("%q", id))
	}
	if err != nil {
		return fmt.Errorf("get ingest job %s: %w", id, err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(job)
}

// deadlineReader reads a streamed body, extending the connection's read deadline
// before every read: the server's ReadTimeout bounds the wait for each chunk, not the
// whole upload (a gigabyte takes longer than 30 s, and fasthttp sets one deadline
// for the whole request). A stalled client still times out.
//
// hash, when set, receives every byte read (the body's hash for Idempotency-Key).
type deadlineReader struct {
	r    io.Reader
	c    *fiber.Ctx
	idle time.Duration
	eof  bool
	hash hash.Hash
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if conn := d.c.Context().Conn(); conn != nil && d.idle > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(d.idle))
	}
	n, err := d.r.Read(p)
	if d.hash != nil && n > 0 {
		d.hash.Write(p[:n])
	}
	if errors.Is(err, io.EOF) {
		d.eof = true
	}
	return n, err
}
