package api

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/command/accounts"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
)

// UseCase is an account use case of command/accounts (RegisterHandler, …).
type UseCase[C, R any] interface {
	Handle(ctx context.Context, cmd C) (R, error)
}

// Auth are the account use cases behind /v1/auth; every field is required.
type Auth struct {
	Register UseCase[accounts.Register, accounts.Account]
	Login    UseCase[accounts.Login, accounts.Tokens]
	Refresh  UseCase[accounts.Refresh, accounts.Tokens]
	Logout   interface {
		Handle(ctx context.Context, cmd accounts.Logout) error
	}
	Me UseCase[string, accounts.Account]
}

// FromAccounts takes the routes' use cases out of accounts.Handlers.
func FromAccounts(h accounts.Handlers) *Auth {
	return &Auth{Register: h.Register, Login: h.Login, Refresh: h.Refresh, Logout: h.Logout, Me: h.AccountByID}
}

func (a *Auth) mustBeComplete() {
	if a.Register == nil || a.Login == nil || a.Refresh == nil || a.Logout == nil || a.Me == nil {
		panic("api: Auth has a nil use case")
	}
}

// KeySet publishes the public keys that verify access tokens
// (jwtkeys.Verifier and jwtkeys.CachingVerifier implement it).
type KeySet interface {
	JWKS() jwtkeys.JWKSet
}

// Request and response bodies of /v1/auth (API.md "Auth").
type (
	registerRequest struct {
		Email    string `json:"email"`
		Password string `json:"password"`
		Name     string `json:"name"`
	}
	loginRequest struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	refreshRequest struct {
		RefreshToken string `json:"refresh_token"`
	}
	accountResponse struct {
		ID    string `json:"id"`
		Email string `json:"email"`
		Name  string `json:"name"`
		Role  string `json:"role"`
	}
	tokenResponse struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int64  `json:"expires_in"`
	}
)

// registerAuth adds /v1/auth/*. Register, login and refresh share the auth rate
// limit per client IP (checked first, before the body is read); logout and me
// need a bearer token of any role.
func (s *server) registerAuth(f *fiber.App) {
	auth := s.deps.Auth
	limited := s.rateLimit(ScopeAuth)
	anyone := s.authorize(RoleViewer)

	s.post(f, "/v1/auth/register", limited, func(c *fiber.Ctx) error {
		var req registerRequest
		if err := s.authBody(c, &req, true); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
		defer cancel()
		a, err := auth.Register.Handle(ctx, accounts.Register{Email: req.Email, Password: req.Password, Name: req.Name})
		if err != nil {
			return err
		}
		return sendPrivateJSON(c, http.StatusCreated, accountOf(a))
	})
	s.post(f, "/v1/auth/login", limited, func(c *fiber.Ctx) error {
		var req loginRequest
		if err := s.authBody(c, &req, true); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
		defer cancel()
		t, err := auth.Login.Handle(ctx, accounts.Login{Email: req.Email, Password: req.Password})
		if err != nil {
			return err
		}
		return sendPrivateJSON(c, http.StatusOK, tokensOf(t))
	})
	s.post(f, "/v1/auth/refresh", limited, func(c *fiber.Ctx) error {
		var req refreshRequest
		if err := s.authBody(c, &req, true); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
		defer cancel()
		t, err := auth.Refresh.Handle(ctx, accounts.Refresh{RefreshToken: req.RefreshToken})
		if err != nil {
			return err
		}
		return sendPrivateJSON(c, http.StatusOK, tokensOf(t))
	})
	s.post(f, "/v1/auth/logout", anyone, func(c *fiber.Ctx) error {
		var req refreshRequest
		if err := s.authBody(c, &req, true); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
		defer cancel()
		if err := auth.Logout.Handle(ctx, accounts.Logout{AccountID: principalOf(c).Subject, RefreshToken: req.RefreshToken}); err != nil {
			return err
		}
		c.Set(fiber.HeaderCacheControl, "no-store")
		return c.SendStatus(http.StatusNoContent)
	})
	s.get(f, "/v1/auth/me", anyone, func(c *fiber.Ctx) error {
		ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
		defer cancel()
		a, err := auth.Me.Handle(ctx, principalOf(c).Subject)
		if err != nil {
			return err
		}
		return sendPrivateJSON(c, http.StatusOK, accountOf(a))
	})
}

// registerJWKS adds /.well-known/jwks.json: the keys change only with a restart
// (a rotation), and a verifier fetching them again every five minutes picks up a
// new key long before tokens signed with it are common.
func (s *server) registerJWKS(f *fiber.App) {
	s.get(f, "/.well-known/jwks.json", s.rateLimit(ScopePublic), func(c *fiber.Ctx) error {
		body, err := json.Marshal(s.deps.Keys.JWKS())
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		c.Set(fiber.HeaderCacheControl, "public, max-age=300")
		return c.Send(body)
	})
}

// authBody reads and strictly decodes an auth request body, like a command's.
func (s *server) authBody(c *fiber.Ctx, dst any, required bool) error {
	body, err := s.commandBody(c, required)
	if err != nil {
		return err
	}
	if body == nil {
		return nil
	}
	return decodeStrict(body, dst)
}

// sendPrivateJSON sends a response that must never be stored by a cache: tokens
// (RFC 6749 5.1) and account data.
func sendPrivateJSON(c *fiber.Ctx, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderPragma, "no-cache")
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(status).Send(body)
}

func accountOf(a accounts.Account) accountResponse {
	return accountResponse{ID: a.ID, Email: a.Email, Name: a.Name, Role: a.Role}
}

func tokensOf(t accounts.Tokens) tokenResponse {
	return tokenResponse{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: t.TokenType,
		ExpiresIn: int64(t.ExpiresIn.Seconds())}
}
