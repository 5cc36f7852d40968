package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/command/accounts"
	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/program"
	"github.com/mediamesh/mediamesh/events"
)

// ProblemContentType is the media type of every error response (RFC 9457).
const ProblemContentType = "application/problem+json"

// problemTypePrefix starts every problem "type". A URN rather than a URL: the types
// are stable identifiers for clients to switch on, not pages to fetch.
const problemTypePrefix = "urn:mediamesh:problem:"

// Problem is an RFC 9457 problem document. Errors lists invalid fields of a
// validation failure; RequestID repeats the X-Request-ID so a report can be traced.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// FieldError is one invalid field of a request: Field is its JSON name (or a header
// or query parameter name), Message what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// httpError is an error raised by the api itself (bad input, auth): it knows its
// status and what the client may be told.
type httpError struct {
	status  int
	kind    string // the problem type's last part
	detail  string
	fields  []FieldError
	headers map[string]string
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.kind, e.detail) }

func errBadRequest(detail string, fields ...FieldError) *httpError {
	kind := "bad-request"
	if len(fields) > 0 {
		kind = "validation"
	}
	return &httpError{status: http.StatusBadRequest, kind: kind, detail: detail, fields: fields}
}

func errNotFound(detail string) *httpError {
	return &httpError{status: http.StatusNotFound, kind: "not-found", detail: detail}
}

func errUnavailable(detail string) *httpError {
	return &httpError{status: http.StatusServiceUnavailable, kind: "unavailable", detail: detail,
		headers: map[string]string{fiber.HeaderRetryAfter: "1"}}
}

// errInternal hides what went wrong: the cause is logged, never sent.
var errInternal = errors.New("internal error")

// problemFor is THE mapping from errors to HTTP: every error a handler returns, every
// error fiber raises (unknown route, wrong method, body too large, malformed HTTP)
// and every domain sentinel of the command side goes through here. Anything it does
// not recognize is a 500 whose detail says nothing about the cause.
//
// Domain errors' messages are written for users (command/program documents this),
// so their text becomes the detail.
func problemFor(err error) (Problem, map[string]string) {
	var (
		he  *httpError
		fe  *fiber.Error
		ve  *program.ValidationError
		ave *accounts.ValidationError
		hdr map[string]string
	)
	p := Problem{}
	switch {
	case errors.As(err, &he):
		p.Status, p.Type, p.Detail, p.Errors, hdr = he.status, he.kind, he.detail, he.fields, he.headers
	case errors.As(err, &ve):
		p.Status, p.Type, p.Detail = http.StatusBadRequest, "validation", "the request has invalid fields"
		for _, f := range ve.Fields {
			p.Errors = append(p.Errors, FieldError{Field: f.Field, Message: f.Message})
		}
	case errors.As(err, &ave):
		p.Status, p.Type, p.Detail = http.StatusBadRequest, "validation", "the request has invalid fields"
		for _, f := range ave.Fields {
			p.Errors = append(p.Errors, FieldError{Field: f.Field, Message: f.Message})
		}
	case errors.Is(err, accounts.ErrEmailTaken):
		p.Status, p.Type, p.Detail = http.StatusConflict, "email-taken", accounts.ErrEmailTaken.Error()
	case errors.Is(err, accounts.ErrInvalidCredentials):
		// Login is not HTTP authentication, but a 401 still names the scheme to use.
		p.Status, p.Type, p.Detail = http.StatusUnauthorized, "invalid-credentials", accounts.ErrInvalidCredentials.Error()
		hdr = map[string]string{fiber.HeaderWWWAuthenticate: `Bearer realm="mediamesh"`}
	case errors.Is(err, accounts.ErrInvalidRefreshToken):
		// A reused token gets the same answer as any invalid one.
		p.Status, p.Type, p.Detail = http.StatusUnauthorized, "invalid-refresh-token", accounts.ErrInvalidRefreshToken.Error()
		hdr = map[string]string{fiber.HeaderWWWAuthenticate: `Bearer realm="mediamesh"`}
	case errors.Is(err, accounts.ErrNotFound):
		p.Status, p.Type, p.Detail = http.StatusNotFound, "not-found", "no account for this token's subject"
	case errors.Is(err, app.ErrNotFound), errors.Is(err, program.ErrEpisodeNotFound):
		p.Status, p.Type, p.Detail = http.StatusNotFound, "not-found", err.Error()
	case errors.Is(err, app.ErrPreconditionFailed):
		p.Status, p.Type, p.Detail = http.StatusPreconditionFailed, "precondition-failed", err.Error()
	case errors.Is(err, events.ErrVersionConflict):
		p.Status, p.Type, p.Detail = http.StatusConflict, "version-conflict", err.Error()
		hdr = map[string]string{fiber.HeaderRetryAfter: "1"}
	case errors.Is(err, program.ErrDuplicateEpisodeNumber):
		p.Status, p.Type, p.Detail = http.StatusConflict, "duplicate-episode-number", err.Error()
	case errors.Is(err, app.ErrIdempotencyKeyReused):
		p.Status, p.Type, p.Detail = http.StatusConflict, "idempotency-key-reused", err.Error()
	case errors.Is(err, program.ErrInvalidState):
		p.Status, p.Type, p.Detail = http.StatusUnprocessableEntity, "invalid-state", err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		p.Status, p.Type, p.Detail = http.StatusServiceUnavailable, "timeout", "the request took too long; retry later"
		hdr = map[string]string{fiber.HeaderRetryAfter: "1"}
	case errors.As(err, &fe):
		p.Status, p.Type, p.Detail = fiberProblem(fe)
	default:
		p.Status, p.Type, p.Detail = http.StatusInternalServerError, "internal", "an internal error occurred"
	}
	p.Title = http.StatusText(p.Status)
	if p.Title == "" {
		p.Title = "Error"
	}
	p.Type = problemTypePrefix + p.Type
	return p, hdr
}

// fiberProblem maps the errors fiber and fasthttp raise before any handler runs.
// Their messages can quote the request, so the details are our own.
func fiberProblem(fe *fiber.Error) (int, string, string) {
	switch fe.Code {
	case fiber.StatusNotFound:
		return fe.Code, "not-found", "no such resource"
	case fiber.StatusMethodNotAllowed:
		return fe.Code, "method-not-allowed", "the resource does not support this method"
	case fiber.StatusRequestEntityTooLarge:
		return fe.Code, "body-too-large", "the request body is too large"
	case fiber.StatusRequestHeaderFieldsTooLarge:
		return fe.Code, "headers-too-large", "the request headers are too large"
	case fiber.StatusRequestTimeout:
		return fe.Code, "timeout", "the request was not received in time"
	}
	if fe.Code >= 400 && fe.Code < 500 {
		return fe.Code, "bad-request", "the request is not valid HTTP"
	}
	return http.StatusInternalServerError, "internal", "an internal error occurred"
}

// kindOf returns a problem's short type ("validation", …).
func kindOf(p Problem) string { return strings.TrimPrefix(p.Type, problemTypePrefix) }
