package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"
)

// Paging of lists (API.md "Conventions").
const (
	defaultLimit = 20
	maxLimit     = 50
	// maxPage only keeps page*limit far from overflow; no real client gets near it.
	maxPage       = 1_000_000
	maxQueryRunes = 200
)

// ProgramLister serves GET /v1/cms/programs from the editorial projection. Its
// methods take plain types so that a projection need not import this package.
//
// ListPrograms returns one page (page from 1, limit 1–50) of programs filtered by
// status (empty: any) and q (empty: no text filter), each in the editorial program
// shape without episodes, and the total number of matches. items must marshal to a
// JSON array. WaitFor returns once the projection has applied the write that a
// consistency token names (streamID at version, or global position), or ctx's error.
type ProgramLister interface {
	ListPrograms(ctx context.Context, status, q string, page, limit int) (items any, total int, err error)
	WaitFor(ctx context.Context, streamID string, version, position int64) error
}

// listResponse is the shape of every paged list.
type listResponse struct {
	Items any `json:"items"`
	Page  int `json:"page"`
	Limit int `json:"limit"`
	Total int `json:"total"`
}

var programStatuses = map[string]bool{"": true, "draft": true, "published": true, "unpublished": true, "archived": true}

func (s *server) registerEditorial(f *fiber.App) {
	ed := s.authorize(RoleEditor)
	reads := s.deps.Editorial
	s.get(f, "/v1/cms/programs/:id", ed, func(c *fiber.Ctx) error {
		return s.editorialRead(c, "program", func(ctx context.Context, id string) (any, int64, error) {
			v, err := reads.ProgramByID.Handle(ctx, id)
			return v, v.Version, err
		})
	})
	s.get(f, "/v1/cms/episodes/:id", ed, func(c *fiber.Ctx) error {
		return s.editorialRead(c, "episode", func(ctx context.Context, id string) (any, int64, error) {
			v, err := reads.EpisodeByID.Handle(ctx, id)
			return v, v.Version, err
		})
	})
	s.get(f, "/v1/cms/programs/:id/history", ed, func(c *fiber.Ctx) error {
		return s.editorialRead(c, "program", func(ctx context.Context, id string) (any, int64, error) {
			h, err := reads.ProgramHistory.Handle(ctx, id)
			if err != nil {
				return nil, 0, err
			}
			var version int64
			if len(h) > 0 {
				version = h[len(h)-1].Version
			}
			return h, version, nil
		})
	})
}

// editorialRead answers a read of the event store's current state: 200 with the
// program stream's version as ETag, or 304 when If-None-Match names it. A
// consistency token is verified (a bad one is 400) but needs no wait: the event
// store is always current.
func (s *server) editorialRead(c *fiber.Ctx, what string, read func(ctx context.Context, id string) (any, int64, error)) error {
	id, err := pathID(c, what)
	if err != nil {
		return err
	}
	if _, err := s.consistencyToken(c); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
	defer cancel()
	v, version, err := read(ctx, id)
	if err != nil {
		return err
	}
	return sendJSON(c, v, etag(version))
}

// sendJSON sends v as an editorial read: private, revalidated every time, with an
// ETag when tag is set, and 304 when If-None-Match names that tag.
func sendJSON(c *fiber.Ctx, v any, tag string) error {
	c.Set(fiber.HeaderCacheControl, "private, no-cache")
	if tag != "" {
		c.Set(fiber.HeaderETag, tag)
		if noneMatch(c.Get(fiber.HeaderIfNoneMatch), tag) {
			return c.SendStatus(fiber.StatusNotModified)
		}
	}
	body, err := json.Marshal(v)
	if err != nil {
		return errors.Join(errInternal, err)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Response().SetBodyRaw(body)
	return nil
}

// noneMatch reports whether an If-None-Match header matches tag, by the weak
// comparison RFC 9110 prescribes for it.
func noneMatch(header, tag string) bool {
	if header == "" {
		return false
	}
	if strings.TrimSpace(header) == "*" {
		return true
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == tag {
			return true
		}
	}
	return false
}

// consistencyToken verifies the request's X-Consistency-Token, if any.
func (s *server) consistencyToken(c *fiber.Ctx) (*WritePoint, error) {
	raw := c.Get(HeaderConsistencyToken)
	if raw == "" {
		return nil, nil
	}
	p, err := s.tokens.Verify(raw)
	if err != nil {
		return nil, errBadRequest("invalid header", FieldError{Field: HeaderConsistencyToken, Message: "is not a token this service issued"})
	}
	return &p, nil
}

var digitsRE = regexp.MustCompile(`^[0-9]{1,9}$`)

// parsePaging reads page (from 1) and limit (1–50, default 20).
func parsePaging(c *fiber.Ctx) (page, limit int, problems []FieldError) {
	page, limit = 1, defaultLimit
	if v := c.Query("page"); v != "" {
		n, err := strconv.Atoi(v)
		if !digitsRE.MatchString(v) || err != nil || n < 1 || n > maxPage {
			problems = append(problems, FieldError{Field: "page", Message: "must be an integer from 1 to " + strconv.Itoa(maxPage)})
		} else {
			page = n
		}
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if !digitsRE.MatchString(v) || err != nil || n < 1 || n > maxLimit {
			problems = append(problems, FieldError{Field: "limit", Message: "must be an integer from 1 to " + strconv.Itoa(maxLimit)})
		} else {
			limit = n
		}
	}
	return page, limit, problems
}

// listPrograms serves GET /v1/cms/programs from the ProgramLister. With a
// consistency token it first waits (bounded) for the projection to include the write.
func (s *server) listPrograms(c *fiber.Ctx) error {
	page, limit, problems := parsePaging(c)
	status := c.Query("status")
	if !programStatuses[status] {
		problems = append(problems, FieldError{Field: "status", Message: "must be one of draft, published, unpublished, archived"})
	}
	q := c.Query("q")
	if !utf8.ValidString(q) || utf8.RuneCountInString(q) > maxQueryRunes {
		problems = append(problems, FieldError{Field: "q", Message: "must be at most 200 characters of UTF-8"})
	}
	if len(problems) > 0 {
		return errBadRequest("invalid query parameters", problems...)
	}
	point, err := s.consistencyToken(c)
	if err != nil {
		return err
	}
	if point != nil {
		ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.ConsistencyWait)
		err := s.deps.Programs.WaitFor(ctx, point.StreamID, point.Version, point.Position)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return &httpError{status: http.StatusServiceUnavailable, kind: "consistency-timeout",
				detail:  "the list does not include the write yet; retry shortly",
				headers: map[string]string{fiber.HeaderRetryAfter: "1"}}
		}
		if err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
	defer cancel()
	items, total, err := s.deps.Programs.ListPrograms(ctx, strings.Clone(status), strings.Clone(q), page, limit)
	if err != nil {
		return err
	}
	if v := reflect.ValueOf(items); !v.IsValid() || (v.Kind() == reflect.Slice && v.IsNil()) {
		items = []any{}
	}
	return sendJSON(c, listResponse{Items: items, Page: page, Limit: limit, Total: total}, "")
}
