package api

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	ct := strings.Clone(c.Get(fiber.HeaderContentType))
	actor := principalOf(c).Subject
	id, err := s.deps.Ingest.Submit(c.UserContext(), ct, r, actor)
	if r.eof {
		c.Locals(ingestBodyDone{}, true)
	}
	if err == nil {
		c.Location(ingestPath + "/" + id)
		c.Set(fiber.HeaderCacheControl, "no-store")
		return c.Status(http.StatusAccepted).JSON(fiber.Map{"job_id": id})
	}
	return ingestProblem(c, id, err)
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
type deadlineReader struct {
	r    io.Reader
	c    *fiber.Ctx
	idle time.Duration
	eof  bool
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if conn := d.c.Context().Conn(); conn != nil && d.idle > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(d.idle))
	}
	n, err := d.r.Read(p)
	if errors.Is(err, io.EOF) {
		d.eof = true
	}
	return n, err
}
