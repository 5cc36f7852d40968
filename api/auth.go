package api

import (
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Roles, in rank order: each can do what the ones before it can (API.md "Auth").
const (
	RoleViewer = "viewer"
	RoleEditor = "editor"
	RoleAdmin  = "admin"
)

// roleRank orders the roles; an unknown role ranks below viewer and can do nothing.
func roleRank(role string) int {
	switch role {
	case RoleViewer:
		return 1
	case RoleEditor:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Principal is the authenticated caller of a request.
type Principal struct {
	Subject string
	Role    string
}

func principalOf(c *fiber.Ctx) Principal {
	p, _ := c.Locals(keyPrincipal).(Principal)
	return p
}

func errUnauthorized(detail, bearerError string) *httpError {
	challenge := `Bearer realm="mediamesh"`
	if bearerError != "" {
		challenge += `, error="` + bearerError + `"`
	}
	return &httpError{status: http.StatusUnauthorized, kind: "unauthorized", detail: detail,
		headers: map[string]string{fiber.HeaderWWWAuthenticate: challenge}}
}

// authorize requires a valid bearer token whose role ranks at least min. A missing
// or invalid token is 401 with a WWW-Authenticate challenge; a valid token with too
// low a role is 403. Why a token is invalid is not told (it helps only an attacker).
func (s *server) authorize(min string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		h := c.Get(fiber.HeaderAuthorization)
		if h == "" {
			return errUnauthorized("a bearer token is required", "")
		}
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return errUnauthorized("the Authorization header must be \"Bearer <token>\"", "invalid_request")
		}
		claims, err := s.deps.Tokens.Verify(strings.TrimSpace(token))
		if err != nil {
			return errUnauthorized("the bearer token is invalid or expired", "invalid_token")
		}
		p := Principal{Subject: strings.Clone(claims.Subject), Role: strings.Clone(claims.Role)}
		c.Locals(keyPrincipal, p)
		if roleRank(p.Role) < roleRank(min) {
			return &httpError{status: http.StatusForbidden, kind: "forbidden",
				detail:  "this requires the " + min + " role",
				headers: map[string]string{fiber.HeaderWWWAuthenticate: `Bearer realm="mediamesh", error="insufficient_scope"`}}
		}
		return c.Next()
	}
}
