package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
)

// HeaderRequestID carries a request's id in and out.
const HeaderRequestID = "X-Request-ID"

type localKey int

const (
	keyRequestID localKey = iota
	keyPrincipal
	keyLogged
)

// validRequestID accepts a client's request id when it is short and plain, so it
// can go into logs and headers as it is; anything else is replaced by a new id.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.' || b == ':') {
			return false
		}
	}
	return true
}

// requestID takes X-Request-ID from the request (or makes one) and echoes it.
func (s *server) requestID(c *fiber.Ctx) error {
	id := c.Get(HeaderRequestID)
	if validRequestID(id) {
		id = strings.Clone(id)
	} else {
		id = uuid.NewString()
	}
	c.Locals(keyRequestID, id)
	c.Set(HeaderRequestID, id)
	return c.Next()
}

func requestIDOf(c *fiber.Ctx) string {
	id, _ := c.Locals(keyRequestID).(string)
	return id
}

// accessLog writes one JSON line per request: never a header value other than the
// request id, never a body, never the query string (it may hold search terms).
// Errors of the chain are rendered here, so the logged status is the one sent.
func (s *server) accessLog(c *fiber.Ctx) error {
	start := time.Now()
	c.Locals(keyLogged, true)
	if err := c.Next(); err != nil {
		if herr := s.errorHandler(c, err); herr != nil {
			return herr
		}
	}
	status := c.Response().StatusCode()
	attrs := []slog.Attr{
		slog.String("method", c.Method()),
		slog.String("path", c.Path()),
		slog.String("route", c.Route().Path),
		slog.Int("status", status),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		slog.Int("bytes_out", len(c.Response().Body())),
		slog.String("request_id", requestIDOf(c)),
		slog.String("remote_ip", c.IP()),
	}
	if p, ok := c.Locals(keyPrincipal).(Principal); ok {
		attrs = append(attrs, slog.String("subject", p.Subject))
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	s.log.LogAttrs(c.UserContext(), level, "http request", attrs...)
	return nil
}

// recoverPanics turns a panic into a 500 whose body says nothing of the cause; the
// cause and stack go to the log.
func (s *server) recoverPanics(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic serving request",
				slog.String("request_id", requestIDOf(c)),
				slog.String("panic", fmt.Sprint(r)),
				slog.String("stack", string(debug.Stack())))
			err = errInternal
		}
	}()
	return c.Next()
}

// errorHandler is fiber's ErrorHandler: every error becomes problem+json.
func (s *server) errorHandler(c *fiber.Ctx, err error) error {
	p, hdr := problemFor(err)
	if p.Status >= 500 && err != errInternal {
		s.log.Error("request failed", slog.String("request_id", requestIDOf(c)), slog.String("error", err.Error()))
	}
	if p.Status == http.StatusMethodNotAllowed {
		if allow := s.allowed(c.Path()); allow != "" {
			c.Set(fiber.HeaderAllow, allow)
		}
	}
	if requestIDOf(c) == "" {
		// fasthttp rejected the request before any middleware ran (413, 431, …).
		id := uuid.NewString()
		c.Locals(keyRequestID, id)
		c.Set(HeaderRequestID, id)
	}
	writeProblem(c, p, hdr)
	if c.Locals(keyLogged) == nil {
		s.log.Info("http request rejected",
			slog.String("method", c.Method()), slog.String("path", c.Path()),
			slog.Int("status", p.Status), slog.String("request_id", requestIDOf(c)))
	}
	return nil
}

// writeProblem sends p with its extra headers.
func writeProblem(c *fiber.Ctx, p Problem, hdr map[string]string) {
	p.RequestID = requestIDOf(c)
	body, err := json.Marshal(p)
	if err != nil { // a Problem of strings and ints always marshals
		body = []byte(`{"type":"` + problemTypePrefix + `internal","title":"Internal Server Error","status":500,"detail":"an internal error occurred"}`)
	}
	for k, v := range hdr {
		c.Set(k, v)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Response().Header.Del(fiber.HeaderETag)
	c.Response().Header.Del(fiber.HeaderLocation)
	c.Status(p.Status)
	c.Set(fiber.HeaderContentType, ProblemContentType)
	c.Response().SetBodyRaw(body)
}

// allowed lists the methods registered for path, for a 405's Allow header.
func (s *server) allowed(path string) string {
	seen := map[string]bool{}
	for _, r := range s.routes {
		if matchPattern(r.pattern, path) {
			seen[r.method] = true
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// matchPattern matches a fiber pattern whose parameters are whole segments (":id").
func matchPattern(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if strings.HasPrefix(ps[i], ":") {
			if xs[i] == "" {
				return false
			}
			continue
		}
		if ps[i] != xs[i] {
			return false
		}
	}
	return true
}
