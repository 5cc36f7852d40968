package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/compress"
	"github.com/valyala/fasthttp"

	qapp "github.com/mediamesh/mediamesh/query/app"
)

// Discovery serves the public discovery routes of API.md: query/app.Discovery
// (every read on the read models) or query/cache.Discovery (the same behind the
// in-process and Redis caches).
type Discovery interface {
	ProgramByID(ctx context.Context, q qapp.ProgramByID) (qapp.Answer, error)
	ProgramEpisodes(ctx context.Context, q qapp.ProgramEpisodes) (qapp.Answer, error)
	EpisodeByID(ctx context.Context, q qapp.EpisodeByID) (qapp.Answer, error)
	BrowsePrograms(ctx context.Context, q qapp.BrowsePrograms) (qapp.Answer, error)
	Search(ctx context.Context, q qapp.Search) (qapp.Answer, error)
	Trending(ctx context.Context, q qapp.Ranked) (qapp.Answer, error)
	Popular(ctx context.Context, q qapp.Ranked) (qapp.Answer, error)
	Categories(ctx context.Context, q qapp.Categories) (qapp.Answer, error)
	RecordPlay(ctx context.Context, q qapp.RecordPlay) error
	// CurrentPosition is the catalog's highest known position, reported in
	// X-Projection-Position by answers that read nothing (a 400).
	CurrentPosition() int64
}

// HeaderProjectionPosition carries the position of the projection that served a
// discovery answer (API.md "Consistency tokens").
const HeaderProjectionPosition = "X-Projection-Position"

// Cache-Control values of discovery answers (API.md "HTTP caching"): short, because
// browsers and CDNs cannot be invalidated; the server's own caches are.
const (
	cacheControlList    = "public, max-age=30, stale-while-revalidate=30"
	cacheControlRanked  = "public, max-age=60"
	cacheControlPrivate = "private, no-cache"
)

// minCompressSize: smaller bodies are sent as they are (what the gzip or brotli
// framing saves on them is lost again in the header).
const minCompressSize = 200

// registerDiscovery registers the public discovery routes. Reads are not rate
// limited: they are served from caches at a cost close to a static file, and a
// limit per IP would mostly hit users behind a shared address; plays are.
//
// Compression: answers are kept compressed in the caches (made once per answer,
// not per request), with their own strong ETag per content coding; fiber's compress
// middleware (best speed) handles whatever else a route sends.
func (s *server) registerDiscovery(f *fiber.App) {
	if s.limiter == nil {
		panic("api: Deps.RateLimiter is required to serve POST /v1/plays")
	}
	d := s.deps.Discovery
	comp := compress.New(compress.Config{Level: compress.LevelBestSpeed})
	s.get(f, "/v1/programs", comp, func(c *fiber.Ctx) error {
		page, limit, problems := parsePaging(c)
		if len(problems) > 0 {
			return s.discoveryError(c, errBadRequest("invalid query parameters", problems...))
		}
		return s.answer(c, cacheControlList, func(ctx context.Context, ro qapp.ReadOptions) (qapp.Answer, error) {
			return d.BrowsePrograms(ctx, qapp.BrowsePrograms{Category: query(c, "category"), Language: query(c, "language"),
				Tag: query(c, "tag"), Sort: query(c, "sort"), Page: page, Limit: limit, ReadOptions: ro})
		})
	})
	s.get(f, "/v1/programs/:id", comp, func(c *fiber.Ctx) error {
		id, err := pathID(c, "program")
		if err != nil {
			return s.discoveryError(c, err)
		}
		return s.answer(c, cacheControlList, func(ctx context.Context, ro qapp.ReadOptions) (qapp.Answer, error) {
			return d.ProgramByID(ctx, qapp.ProgramByID{ID: id, ReadOptions: ro})
		})
	})
	s.get(f, "/v1/programs/:id/episodes", comp, func(c *fiber.Ctx) error {
		id, err := pathID(c, "program")
		if err != nil {
			return s.discoveryError(c, err)
		}
		page, limit, problems := parsePaging(c)
		season, ok := parseCount(c.Query("season"))
		if !ok {
			problems = append(problems, FieldError{Field: "season", Message: "must be an integer from 1 to 1000000"})
		}
		if len(problems) > 0 {
			return s.discoveryError(c, errBadRequest("invalid query parameters", problems...))
		}
		return s.answer(c, cacheControlList, func(ctx context.Context, ro qapp.ReadOptions) (qapp.Answer, error) {
			return d.ProgramEpisodes(ctx, qapp.ProgramEpisodes{ProgramID: id, Season: season, Page: page, Limit: limit, ReadOptions: ro})
		})
	})
	s.get(f, "/v1/episodes/:id", comp, func(c *fiber.Ctx) error {
		id, err := pathID(c, "episode")
		if err != nil {
			return s.discoveryError(c, err)
		}
		return s.answer(c, cacheControlList, func(ctx context.Context, ro qapp.ReadOptions) (qapp.Answer, error) {
			return d.EpisodeByID(ctx, qapp.EpisodeByID{ID: id, ReadOptions: ro})
		})
	})
	s.get(f, "/v1/search", comp, func(c *fiber.Ctx) error {
		page, limit, problems := parsePaging(c)
		if len(problems) > 0 {
			return s.discoveryError(c, errBadRequest("invalid query parameters", problems...))
		}
		return s.answer(c, cacheControlList, func(ctx context.Context, ro qapp.ReadOptions) (qapp.Answer, error) {
			return d.Search(ctx, qapp.Search{Q: query(c, "q"), Category: query(c, "category"), Language: query(c, "language"),
				Page: page, Limit: limit, ReadOptions: ro})
		})
	})
	ranked := func(get func(context.Context, qapp.Ranked) (qapp.Answer, error)) fiber.Handler {
		return func(c *fiber.Ctx) error {
			page, limit, problems := parsePaging(c)
			if len(problems) > 0 {
				return s.discoveryError(c, errBadRequest("invalid query parameters", problems...))
			}
			return s.answer(c, cacheControlRanked, func(ctx context.Context, ro qapp.ReadOptions) (qapp.Answer, error) {
				return get(ctx, qapp.Ranked{Category: query(c, "category"), Page: page, Limit: limit, ReadOptions: ro})
			})
		}
	}
	s.get(f, "/v1/trending", comp, ranked(d.Trending))
	s.get(f, "/v1/popular", comp, ranked(d.Popular))
	s.get(f, "/v1/categories", comp, func(c *fiber.Ctx) error {
		return s.answer(c, cacheControlRanked, func(ctx context.Context, ro qapp.ReadOptions) (qapp.Answer, error) {
			return d.Categories(ctx, qapp.Categories{ReadOptions: ro})
		})
	})
	s.post(f, "/v1/plays", s.rateLimit(ScopePlays), s.recordPlay)
}

// query returns a query parameter as a string the handler may keep (fiber's are
// views into a buffer it reuses).
func query(c *fiber.Ctx, name string) string { return strings.Clone(c.Query(name)) }

// parseCount reads an optional integer from 1 to 1,000,000 ("" is 0: not given).
func parseCount(v string) (int, bool) {
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if !digitsRE.MatchString(v) || err != nil || n < 1 || n > 1_000_000 {
		return 0, false
	}
	return n, true
}

// answer runs one discovery read and sends it: with a consistency token the read
// must include the token's write (verified here: a forged token is a 400).
func (s *server) answer(c *fiber.Ctx, cacheControl string, read func(ctx context.Context, ro qapp.ReadOptions) (qapp.Answer, error)) error {
	// The prefix of relative asset URLs when no CDN base URL is configured: the
	// same base as an upload's URLs (forwarded headers from trusted proxies only).
	ro := qapp.ReadOptions{Base: s.requestBase(c)}
	if c.Request().Header.Peek(HeaderConsistencyToken) != nil {
		point, err := s.consistencyToken(c)
		if err != nil {
			return s.discoveryError(c, err)
		}
		if point != nil {
			ro.After = &qapp.WritePoint{StreamID: point.StreamID, Version: point.Version, Position: point.Position}
		}
	}
	a, err := read(c.UserContext(), ro)
	if err != nil {
		return s.discoveryError(c, err)
	}
	if a.Consistent || ro.After != nil {
		cacheControl = cacheControlPrivate
	}
	sendAnswer(c, a, cacheControl)
	return nil
}

// sendAnswer writes a rendered answer: its ETag (per content coding), 304 when
// If-None-Match names it, and the body in the best coding the client accepts.
func sendAnswer(c *fiber.Ctx, a qapp.Answer, cacheControl string) {
	h := &c.Response().Header
	h.Set(fiber.HeaderCacheControl, cacheControl)
	h.Set(fiber.HeaderVary, fiber.HeaderAcceptEncoding)
	var pos [20]byte
	h.SetBytesV(HeaderProjectionPosition, strconv.AppendInt(pos[:0], a.Position, 10))
	enc := ""
	if len(a.Body) >= minCompressSize {
		enc = negotiateEncoding(c.Get(fiber.HeaderAcceptEncoding))
	}
	tag := a.ETag
	if enc != "" {
		tag = tag[:len(tag)-1] + "-" + enc + `"`
	}
	h.Set(fiber.HeaderETag, tag)
	if inm := c.Request().Header.Peek(fiber.HeaderIfNoneMatch); inm != nil && noneMatch(string(inm), tag) {
		c.Status(fiber.StatusNotModified)
		return
	}
	h.SetContentType(fiber.MIMEApplicationJSON)
	body := a.Body
	switch enc {
	case "br":
		body = a.Variant(qapp.EncodingBrotli, func(b []byte) []byte {
			return fasthttp.AppendBrotliBytesLevel(nil, b, fasthttp.CompressBrotliDefaultCompression)
		})
	case "gzip":
		body = a.Variant(qapp.EncodingGzip, func(b []byte) []byte {
			return fasthttp.AppendGzipBytesLevel(nil, b, fasthttp.CompressDefaultCompression)
		})
	}
	if enc != "" {
		h.Set(fiber.HeaderContentEncoding, enc)
	}
	c.Response().SetBodyRaw(body)
}

// negotiateEncoding picks br, then gzip, among the codings an Accept-Encoding
// header accepts (a coding with q=0 is refused); "" for identity.
func negotiateEncoding(header string) string {
	if header == "" {
		return ""
	}
	br, gzip := false, false
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			if v, err := strconv.ParseFloat(q, 64); err != nil || v <= 0 {
				continue
			}
		}
		switch name {
		case "br":
			br = true
		case "gzip", "x-gzip":
			gzip = true
		case "*":
			br = true
		}
	}
	switch {
	case br:
		return "br"
	case gzip:
		return "gzip"
	}
	return ""
}

// discoveryError maps the query side's errors to problems; every discovery
// response, an error too, carries X-Projection-Position.
func (s *server) discoveryError(c *fiber.Ctx, err error) error {
	var (
		ve      *qapp.ValidationError
		missing *qapp.MissingError
	)
	pos := s.deps.Discovery.CurrentPosition()
	if errors.As(err, &missing) && missing.Snapshot.Position > 0 {
		pos = missing.Snapshot.Position
	}
	c.Set(HeaderProjectionPosition, strconv.FormatInt(pos, 10))
	switch {
	case errors.As(err, &ve):
		fields := make([]FieldError, len(ve.Fields))
		for i, f := range ve.Fields {
			fields[i] = FieldError{Field: f.Field, Message: f.Message}
		}
		return errBadRequest("invalid query parameters", fields...)
	case errors.Is(err, qapp.ErrNotFound):
		what := "program"
		if missing != nil {
			what = missing.What
		}
		return errNotFound("no visible " + what + " with this id")
	case errors.Is(err, qapp.ErrNotConsistent):
		return &httpError{status: http.StatusServiceUnavailable, kind: "consistency-timeout",
			detail:  "the data does not include the write of the consistency token yet; retry shortly",
			headers: map[string]string{fiber.HeaderRetryAfter: "1"}}
	case errors.Is(err, qapp.ErrUnavailable):
		return errors.Join(errUnavailable("a read model is unavailable; retry shortly"), err)
	}
	return err
}

// playRequest is POST /v1/plays's body.
type playRequest struct {
	ProgramID       string `json:"program_id"`
	EpisodeID       string `json:"episode_id"`
	SessionID       string `json:"session_id"`
	PositionSeconds *int   `json:"position_seconds"`
}

// recordPlay answers POST /v1/plays: 202 once the play is on the bus.
func (s *server) recordPlay(c *fiber.Ctx) error {
	body, err := s.commandBody(c, true)
	if err != nil {
		return err
	}
	var req playRequest
	if err := decodeStrict(body, &req); err != nil {
		return err
	}
	err = s.deps.Discovery.RecordPlay(c.UserContext(), qapp.RecordPlay{ProgramID: req.ProgramID, EpisodeID: req.EpisodeID,
		SessionID: req.SessionID, PositionSeconds: req.PositionSeconds})
	if err != nil {
		return s.discoveryError(c, err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(HeaderProjectionPosition, strconv.FormatInt(s.deps.Discovery.CurrentPosition(), 10))
	return c.SendStatus(fiber.StatusAccepted)
}
