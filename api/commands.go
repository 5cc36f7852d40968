package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/events"
)

// Request bodies of the commands (API.md "Commands"). PATCH bodies use pointers: an
// omitted field is left as it is.
type (
	createProgramRequest struct {
		Title       string   `json:"title"`
		Description string   `json:"description"`
		Category    string   `json:"category"`
		Language    string   `json:"language"`
		Tags        []string `json:"tags"`
		ExternalID  string   `json:"external_id"`
	}
	updateProgramRequest struct {
		Title       *string   `json:"title"`
		Description *string   `json:"description"`
		Category    *string   `json:"category"`
		Language    *string   `json:"language"`
		Tags        *[]string `json:"tags"`
	}
	addEpisodeRequest struct {
		Title           string `json:"title"`
		Number          int    `json:"number"`
		Season          int    `json:"season"`
		Description     string `json:"description"`
		DurationSeconds int    `json:"duration_seconds"`
		ExternalID      string `json:"external_id"`
	}
	updateEpisodeRequest struct {
		Title           *string `json:"title"`
		Number          *int    `json:"number"`
		Season          *int    `json:"season"`
		Description     *string `json:"description"`
		DurationSeconds *int    `json:"duration_seconds"`
	}
	// noBody is the body of the state changes (publish, …): nothing, or {}.
	noBody struct{}
)

// writeResult is the body of every command response.
type writeResult struct {
	ID        string `json:"id"`
	ProgramID string `json:"program_id,omitempty"`
	Version   int64  `json:"version"`
	Position  int64  `json:"position"`
}

// resource says what a command route acts on: it shapes the response.
type resource int

const (
	programResource resource = iota
	episodeResource
)

func (s *server) registerCommands(f *fiber.App) {
	cmds := s.deps.Commands
	ed := s.authorize(RoleEditor)

	s.post(f, "/v1/programs", ed, func(c *fiber.Ctx) error {
		var req createProgramRequest
		return s.command(c, &req, true, programResource, func(ctx context.Context, m app.Meta) (app.Result, error) {
			return cmds.CreateProgram.Handle(ctx, app.CreateProgram{Meta: m, Title: req.Title, Description: req.Description,
				Category: req.Category, Language: req.Language, Tags: req.Tags, ExternalID: req.ExternalID})
		})
	})
	s.patch(f, "/v1/programs/:id", ed, func(c *fiber.Ctx) error {
		id, err := pathID(c, "program")
		if err != nil {
			return err
		}
		var req updateProgramRequest
		return s.command(c, &req, true, programResource, func(ctx context.Context, m app.Meta) (app.Result, error) {
			return cmds.UpdateProgram.Handle(ctx, app.UpdateProgram{Meta: m, ProgramID: id, Title: req.Title,
				Description: req.Description, Category: req.Category, Language: req.Language, Tags: req.Tags})
		})
	})
	programAction := func(run func(ctx context.Context, m app.Meta, id string) (app.Result, error)) fiber.Handler {
		return func(c *fiber.Ctx) error {
			id, err := pathID(c, "program")
			if err != nil {
				return err
			}
			return s.command(c, &noBody{}, false, programResource, func(ctx context.Context, m app.Meta) (app.Result, error) {
				return run(ctx, m, id)
			})
		}
	}
	s.post(f, "/v1/programs/:id/publish", ed, programAction(func(ctx context.Context, m app.Meta, id string) (app.Result, error) {
		return cmds.PublishProgram.Handle(ctx, app.PublishProgram{Meta: m, ProgramID: id})
	}))
	s.post(f, "/v1/programs/:id/unpublish", ed, programAction(func(ctx context.Context, m app.Meta, id string) (app.Result, error) {
		return cmds.UnpublishProgram.Handle(ctx, app.UnpublishProgram{Meta: m, ProgramID: id})
	}))
	s.post(f, "/v1/programs/:id/archive", ed, programAction(func(ctx context.Context, m app.Meta, id string) (app.Result, error) {
		return cmds.ArchiveProgram.Handle(ctx, app.ArchiveProgram{Meta: m, ProgramID: id})
	}))
	s.post(f, "/v1/programs/:id/episodes", ed, func(c *fiber.Ctx) error {
		id, err := pathID(c, "program")
		if err != nil {
			return err
		}
		var req addEpisodeRequest
		return s.command(c, &req, true, episodeResource, func(ctx context.Context, m app.Meta) (app.Result, error) {
			return cmds.AddEpisode.Handle(ctx, app.AddEpisode{Meta: m, ProgramID: id, Title: req.Title, Number: req.Number,
				Season: req.Season, Description: req.Description, DurationSeconds: req.DurationSeconds, ExternalID: req.ExternalID})
		})
	})
	s.patch(f, "/v1/episodes/:id", ed, func(c *fiber.Ctx) error {
		id, err := pathID(c, "episode")
		if err != nil {
			return err
		}
		var req updateEpisodeRequest
		return s.command(c, &req, true, episodeResource, func(ctx context.Context, m app.Meta) (app.Result, error) {
			return cmds.UpdateEpisode.Handle(ctx, app.UpdateEpisode{Meta: m, EpisodeID: id, Title: req.Title, Number: req.Number,
				Season: req.Season, Description: req.Description, DurationSeconds: req.DurationSeconds})
		})
	})
	episodeAction := func(run func(ctx context.Context, m app.Meta, id string) (app.Result, error)) fiber.Handler {
		return func(c *fiber.Ctx) error {
			id, err := pathID(c, "episode")
			if err != nil {
				return err
			}
			return s.command(c, &noBody{}, false, episodeResource, func(ctx context.Context, m app.Meta) (app.Result, error) {
				return run(ctx, m, id)
			})
		}
	}
	s.post(f, "/v1/episodes/:id/publish", ed, episodeAction(func(ctx context.Context, m app.Meta, id string) (app.Result, error) {
		return cmds.PublishEpisode.Handle(ctx, app.PublishEpisode{Meta: m, EpisodeID: id})
	}))
	s.post(f, "/v1/episodes/:id/unpublish", ed, episodeAction(func(ctx context.Context, m app.Meta, id string) (app.Result, error) {
		return cmds.UnpublishEpisode.Handle(ctx, app.UnpublishEpisode{Meta: m, EpisodeID: id})
	}))
	s.post(f, "/v1/episodes/:id/archive", ed, episodeAction(func(ctx context.Context, m app.Meta, id string) (app.Result, error) {
		return cmds.ArchiveEpisode.Handle(ctx, app.ArchiveEpisode{Meta: m, EpisodeID: id})
	}))
}

// command runs one command request: it reads and strictly decodes the body into req,
// reads the headers into app.Meta, then runs the command under the request's
// Idempotency-Key and sends its result or its problem.
func (s *server) command(c *fiber.Ctx, req any, bodyRequired bool, res resource, run func(ctx context.Context, m app.Meta) (app.Result, error)) error {
	body, err := s.commandBody(c, bodyRequired)
	if err != nil {
		return err
	}
	if body != nil {
		if err := decodeStrict(body, req); err != nil {
			return err
		}
	}
	meta, err := metaOf(c)
	if err != nil {
		return err
	}
	return s.idempotent(c, body, func(scoped string) (storedResponse, error) {
		meta.IdempotencyKey = scoped
		ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
		defer cancel()
		result, err := run(ctx, meta)
		if err != nil {
			return s.problemResponse(c, err), err
		}
		return s.resultResponse(res, result), nil
	})
}

// resultResponse is a command's success: 201 with Location for a creation, else 200;
// the body names the write, and so do ETag and X-Consistency-Token.
func (s *server) resultResponse(res resource, r app.Result) storedResponse {
	out := writeResult{ID: r.ID, Version: r.Version, Position: r.Position}
	streamID := r.StreamID
	if res == episodeResource {
		out.ProgramID = r.ProgramID
	}
	if streamID == "" {
		pid := r.ProgramID
		if res == programResource {
			pid = r.ID
		}
		streamID = events.ProgramStreamID(pid)
	}
	body, _ := json.Marshal(out) // strings and ints always marshal
	resp := storedResponse{
		Status: fiber.StatusOK,
		Headers: map[string]string{
			fiber.HeaderContentType: fiber.MIMEApplicationJSON,
			fiber.HeaderETag:        etag(r.Version),
			HeaderConsistencyToken:  s.tokens.Sign(WritePoint{StreamID: streamID, Version: r.Version, Position: r.Position}),
		},
		Body: body,
	}
	if r.Created {
		resp.Status = fiber.StatusCreated
		if res == programResource {
			resp.Headers[fiber.HeaderLocation] = "/v1/cms/programs/" + r.ID
		} else {
			resp.Headers[fiber.HeaderLocation] = "/v1/cms/episodes/" + r.ID
		}
	}
	return resp
}

// problemResponse renders a command's error as it is sent (and maybe stored).
func (s *server) problemResponse(c *fiber.Ctx, err error) storedResponse {
	p, hdr := problemFor(err)
	if p.Status >= 500 {
		s.log.Error("command failed", slog.String("request_id", requestIDOf(c)), slog.String("error", err.Error()))
	}
	p.RequestID = requestIDOf(c)
	body, _ := json.Marshal(p)
	headers := map[string]string{fiber.HeaderContentType: ProblemContentType}
	for k, v := range hdr {
		headers[k] = v
	}
	return storedResponse{Status: p.Status, Headers: headers, Body: body}
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// pathID returns the :id parameter as a canonical (lower-case) UUID. Anything else
// names nothing that can exist: 404 without asking the command side.
func pathID(c *fiber.Ctx, what string) (string, error) {
	raw := c.Params("id")
	u, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		return "", errNotFound("no " + what + " with this id")
	}
	return u.String(), nil
}

var (
	traceParentRE = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)
	versionRE     = regexp.MustCompile(`^[0-9]{1,18}$`)
)

// metaOf reads what a command carries besides its fields: the caller, If-Match, the
// request id (as correlation id) and the W3C trace context.
func metaOf(c *fiber.Ctx) (app.Meta, error) {
	m := app.Meta{Actor: principalOf(c).Subject, CorrelationID: requestIDOf(c)}
	if all := c.Request().Header.PeekAll(fiber.HeaderIfMatch); len(all) > 0 {
		v, ok := parseIfMatch(all)
		if !ok {
			return app.Meta{}, errBadRequest("invalid header",
				FieldError{Field: fiber.HeaderIfMatch, Message: `must be one stream version, e.g. "3"`})
		}
		m.ExpectedVersion = &v
	}
	if tp := c.Get("traceparent"); traceParentRE.MatchString(tp) {
		m.TraceParent = strings.Clone(tp)
		if ts := c.Get("tracestate"); len(ts) <= 512 && printableASCII(ts) {
			m.TraceState = strings.Clone(ts)
		}
	}
	return m, nil
}

// parseIfMatch accepts one version, quoted ("3") or bare (3). A weak tag, "*", a
// list, or anything but a non-negative integer is refused: a command's If-Match must
// name exactly one version.
func parseIfMatch(values [][]byte) (int64, bool) {
	if len(values) != 1 {
		return 0, false
	}
	v := strings.TrimSpace(string(values[0]))
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	if !versionRE.MatchString(v) {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
