package api

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/gofiber/fiber/v2"
)

// openAPIDocument is the OpenAPI 3.1 description of API.md, written by hand; a test
// holds it and the registered routes to each other.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI document served at /openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPIDocument...) }

func (s *server) openAPI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Set(fiber.HeaderCacheControl, "public, max-age=300")
	return c.Send(openAPIDocument)
}

// live answers while the process runs: it checks nothing else on purpose, so an
// orchestrator never restarts a healthy process because a dependency is down.
func (s *server) live(c *fiber.Ctx) error {
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(fiber.Map{"status": "ok"})
}

// ready runs every readiness check concurrently, bounded by ReadinessTimeout, and
// answers 503 naming each dependency that failed (its error goes to the log only).
func (s *server) ready(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.ReadinessTimeout)
	defer cancel()
	results := make([]error, len(s.deps.Readiness))
	var wg sync.WaitGroup
	for i, chk := range s.deps.Readiness {
		wg.Go(func() {
			defer func() {
				if r := recover(); r != nil {
					results[i] = fmt.Errorf("check panicked: %v", r)
				}
			}()
			results[i] = chk.Check(ctx)
		})
	}
	wg.Wait()
	checks := map[string]string{}
	var failed []string
	for i, chk := range s.deps.Readiness {
		if err := results[i]; err != nil {
			checks[chk.Name] = "unavailable"
			failed = append(failed, chk.Name)
			s.log.Warn("readiness check failed", slog.String("dependency", chk.Name), slog.String("error", err.Error()))
			continue
		}
		checks[chk.Name] = "ok"
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	if len(failed) > 0 {
		sort.Strings(failed)
		return &httpError{status: http.StatusServiceUnavailable, kind: "not-ready",
			detail:  "not ready: " + strings.Join(failed, ", ") + " unavailable",
			headers: map[string]string{fiber.HeaderRetryAfter: "5"}}
	}
	return c.JSON(fiber.Map{"status": "ok", "checks": checks})
}
