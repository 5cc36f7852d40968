package api

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/projections/rebuild"
)

// ProjectionAdmin is what the ops endpoints (API.md "Ops (admin)") call;
// projections/rebuild.Manager implements it. StartRebuild and Progress report
// rebuild.ErrUnknownProjection (404), rebuild.ErrNotRebuildable (422),
// rebuild.ErrRebuildRunning (409) and rebuild.ErrNoRebuild (404).
type ProjectionAdmin interface {
	Status(ctx context.Context) ([]rebuild.Status, error)
	StartRebuild(ctx context.Context, name string) (string, error)
	Progress(ctx context.Context, name string) (rebuild.Progress, error)
}

// projectionNameRE bounds a path's projection name; anything else names nothing.
var projectionNameRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)

// registerAdmin adds the ops endpoints, all for the admin role.
func (s *server) registerAdmin(f *fiber.App) {
	if s.deps.Tokens == nil {
		panic("api: Deps.Tokens is required to serve the admin endpoints")
	}
	admin := s.authorize(RoleAdmin)
	s.get(f, "/v1/admin/projections", admin, s.projectionStatus)
	s.post(f, "/v1/admin/projections/:name/rebuild", admin, s.startRebuild)
	s.get(f, "/v1/admin/projections/:name/rebuild", admin, s.rebuildProgress)
}

// projectionStatus answers GET /v1/admin/projections: a bare array, one row per
// projection version.
func (s *server) projectionStatus(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
	defer cancel()
	sts, err := s.deps.Admin.Status(ctx)
	if err != nil {
		return adminError(err)
	}
	if sts == nil {
		sts = []rebuild.Status{}
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(sts)
}

// startRebuild answers POST /v1/admin/projections/{name}/rebuild with 202 and the
// rebuild's id; the rebuild itself runs in a projector (see projections/rebuild).
// The request has no body: whatever is sent is ignored.
func (s *server) startRebuild(c *fiber.Ctx) error {
	name, err := projectionName(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
	defer cancel()
	id, err := s.deps.Admin.StartRebuild(ctx, name)
	if err != nil {
		return adminError(err)
	}
	s.log.Info("projection rebuild started", "projection", name, "rebuild_id", id,
		"subject", principalOf(c).Subject, "request_id", requestIDOf(c))
	c.Set(fiber.HeaderLocation, "/v1/admin/projections/"+name+"/rebuild")
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(http.StatusAccepted).JSON(fiber.Map{"rebuild_id": id})
}

// rebuildProgress answers GET /v1/admin/projections/{name}/rebuild: the latest
// rebuild of the projection.
func (s *server) rebuildProgress(c *fiber.Ctx) error {
	name, err := projectionName(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.CommandTimeout)
	defer cancel()
	p, err := s.deps.Admin.Progress(ctx, name)
	if err != nil {
		return adminError(err)
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(p)
}

func projectionName(c *fiber.Ctx) (string, error) {
	name := c.Params("name")
	if !projectionNameRE.MatchString(name) {
		return "", errNotFound("no projection with this name")
	}
	return strings.Clone(name), nil
}

// adminError turns the projection admin's sentinels into the api's own errors,
// which problemFor renders; anything else stays an internal error.
func adminError(err error) error {
	switch {
	case errors.Is(err, rebuild.ErrUnknownProjection):
		return errNotFound("no projection with this name")
	case errors.Is(err, rebuild.ErrNoRebuild):
		return errNotFound("this projection has never been rebuilt")
	case errors.Is(err, rebuild.ErrNotRebuildable):
		return &httpError{status: http.StatusUnprocessableEntity, kind: "not-rebuildable",
			detail: "this projection cannot be rebuilt from the event store: telemetry aggregates are their own source of truth, and side-effecting processors are never re-run"}
	case errors.Is(err, rebuild.ErrRebuildRunning):
		return &httpError{status: http.StatusConflict, kind: "rebuild-running",
			detail: "a rebuild of this projection is already running; follow it with GET on this resource"}
	}
	return err
}
