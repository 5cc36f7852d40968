// Package api is MediaMesh's HTTP layer (gofiber/fiber/v2): the routes of API.md,
// their request and response types, bearer-token auth, problem+json errors,
// Idempotency-Key handling, consistency tokens and the OpenAPI document.
//
// It calls the application handlers of command/app (and, for lists, a projection
// passed in as a ProgramLister) and holds no business rules of its own: it turns
// HTTP into commands and queries, and results and errors back into HTTP.
//
// Decisions:
//   - Every error leaves through one function (problemFor) as RFC 9457
//     problem+json, fiber's own (unknown route, wrong method, body too large,
//     malformed HTTP) included; a panic becomes a 500 that reveals nothing.
//   - Bad input is rejected before anything runs: auth first, then content type,
//     strict JSON (unknown, duplicate and null fields, wrong types, invalid UTF-8,
//     deep nesting and trailing data are 400s naming the field), then headers
//     (If-Match, Idempotency-Key). Only then is the idempotency key claimed and the
//     command executed.
//   - Strings handed to the command side are copies: fiber's are views into
//     buffers it reuses after the request.
package api

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/infra/jwtkeys"
	"github.com/mediamesh/mediamesh/infra/ratelimit"
)

// Defaults of Config.
const (
	DefaultCommandBodyLimit  = 1 << 20
	DefaultIdempotencyTTL    = 24 * time.Hour
	DefaultIdempotencyLease  = 30 * time.Second
	DefaultCommandTimeout    = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultReadinessTimeout  = 2 * time.Second
	DefaultConsistencyWait   = 2 * time.Second
	DefaultRequestHeaderSize = 8 << 10
)

// Config tunes the HTTP server. The zero value of every field means its default.
type Config struct {
	// CommandBodyLimit is the largest command body (API.md: 1 MiB); larger is 413.
	CommandBodyLimit int
	// BodyLimit is the largest body the server reads at all; it is raised to
	// CommandBodyLimit when lower. Routes with larger bodies (asset uploads) need it.
	BodyLimit int
	// IdempotencyTTL is how long an Idempotency-Key's response is kept (24 h).
	IdempotencyTTL time.Duration
	// IdempotencyLease is how long a running request holds its key against retries
	// of the same request; it must exceed CommandTimeout, so a live request never
	// loses its claim. A crashed request's key is free again after it.
	IdempotencyLease time.Duration
	// CommandTimeout bounds one command's work (the context passed to the handler).
	CommandTimeout time.Duration
	// ReadTimeout, WriteTimeout and IdleTimeout are the server's connection timeouts.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ReadinessTimeout bounds /health/ready's checks, which run concurrently.
	ReadinessTimeout time.Duration
	// ConsistencyWait bounds how long a list read waits for its projection to catch
	// up with a consistency token before answering 503.
	ConsistencyWait time.Duration
	// ConsistencySecret keys the consistency tokens' MAC (required when commands or
	// editorial reads are served). Every instance must be given the same secret; the
	// composition root derives it from the signing key.
	ConsistencySecret []byte
	// RateLimits are the per-client-IP limits of the rate-limited routes (zero
	// fields: DefaultAuthLimit, DefaultPlaysLimit, DefaultPublicLimit).
	RateLimits RateLimits
	// TrustedProxies are the networks of the reverse proxies / load balancers in
	// front of the server: only from a peer inside one of them is X-Forwarded-For
	// believed (see clientIP). Empty: the TCP peer is always the client.
	TrustedProxies []netip.Prefix
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.CommandBodyLimit <= 0 {
		c.CommandBodyLimit = DefaultCommandBodyLimit
	}
	if c.BodyLimit < c.CommandBodyLimit {
		c.BodyLimit = c.CommandBodyLimit
	}
	def(&c.IdempotencyTTL, DefaultIdempotencyTTL)
	def(&c.IdempotencyLease, DefaultIdempotencyLease)
	def(&c.CommandTimeout, DefaultCommandTimeout)
	def(&c.ReadTimeout, DefaultReadTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.ReadinessTimeout, DefaultReadinessTimeout)
	def(&c.ConsistencyWait, DefaultConsistencyWait)
	c.RateLimits = c.RateLimits.withDefaults()
	return c
}

// Handler is a command handler of command/app (CreateProgramHandler, …).
type Handler[C any] interface {
	Handle(ctx context.Context, cmd C) (app.Result, error)
}

// Query is an editorial read of command/app (ProgramByIDHandler, …).
type Query[R any] interface {
	Handle(ctx context.Context, id string) (R, error)
}

// Commands are the write side's command handlers; every field is required.
type Commands struct {
	CreateProgram    Handler[app.CreateProgram]
	UpdateProgram    Handler[app.UpdateProgram]
	PublishProgram   Handler[app.PublishProgram]
	UnpublishProgram Handler[app.UnpublishProgram]
	ArchiveProgram   Handler[app.ArchiveProgram]
	AddEpisode       Handler[app.AddEpisode]
	UpdateEpisode    Handler[app.UpdateEpisode]
	PublishEpisode   Handler[app.PublishEpisode]
	UnpublishEpisode Handler[app.UnpublishEpisode]
	ArchiveEpisode   Handler[app.ArchiveEpisode]
}

// Editorial are the editorial reads served from the event store; every field is
// required.
type Editorial struct {
	ProgramByID    Query[app.ProgramView]
	EpisodeByID    Query[app.EpisodeView]
	ProgramHistory Query[[]app.HistoryEntry]
}

// FromHandlers takes the commands and editorial reads out of app.Handlers.
func FromHandlers(h app.Handlers) (*Commands, *Editorial) {
	return &Commands{
			CreateProgram:    h.CreateProgram,
			UpdateProgram:    h.UpdateProgram,
			PublishProgram:   h.PublishProgram,
			UnpublishProgram: h.UnpublishProgram,
			ArchiveProgram:   h.ArchiveProgram,
			AddEpisode:       h.AddEpisode,
			UpdateEpisode:    h.UpdateEpisode,
			PublishEpisode:   h.PublishEpisode,
			UnpublishEpisode: h.UnpublishEpisode,
			ArchiveEpisode:   h.ArchiveEpisode,
		}, &Editorial{
			ProgramByID:    h.ProgramByID,
			EpisodeByID:    h.EpisodeByID,
			ProgramHistory: h.ProgramHistory,
		}
}

// TokenVerifier checks a bearer token (jwtkeys.Verifier implements it).
type TokenVerifier interface {
	Verify(token string) (jwtkeys.Claims, error)
}

// ReadinessCheck is one dependency /health/ready checks; Name is what a 503 names.
type ReadinessCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// Deps are what the server calls. Commands and Editorial are each optional, so a
// role can serve only part of the API; the routes of a missing part are not
// registered. The rest is required by the parts that are served.
type Deps struct {
	Commands  *Commands
	Editorial *Editorial
	// Programs serves GET /v1/cms/programs; the route exists only when it is set.
	Programs ProgramLister
	// Tokens verifies bearer tokens (required with Commands, Editorial or Programs).
	Tokens TokenVerifier
	// Idempotency stores Idempotency-Key records (required with Commands).
	Idempotency IdempotencyStore
	// Auth serves /v1/auth/*; the routes exist only when it is set. It needs Tokens
	// and RateLimiter.
	Auth *Auth
	// Keys serves /.well-known/jwks.json (the route exists only when it is set); it
	// needs RateLimiter. Usually the same value as Tokens.
	Keys KeySet
	// RateLimiter enforces Config.RateLimits (required with Auth or Keys).
	RateLimiter RateLimiter
	// Assets serves POST /v1/assets and the /media/ routes, each only when its
	// dependency is set (see Assets).
	Assets *Assets
	// Discovery serves the public discovery routes and POST /v1/plays; they exist
	// only when it is set. It needs RateLimiter and Config.ConsistencySecret.
	Discovery Discovery
	// Admin serves the ops endpoints /v1/admin/projections…; they exist only when
	// it is set (admin role; needs Tokens).
	Admin ProjectionAdmin
	// Ingest serves POST /v1/ingest and GET /v1/ingest/{job_id} (editor role;
	// needs Tokens); they exist only when it is set. Setting it turns on request
	// body streaming (see streamBodies in ingest.go).
	Ingest Ingest
	// Metrics, when set, counts and times every request and serves GET /metrics.
	Metrics HTTPMetrics
	// Tracer, when set, traces every request (a server span, continued by the
	// events a command appends); telemetry.NewTracing gives a no-op one by default.
	Tracer trace.TracerProvider
	// Readiness are the checks of /health/ready.
	Readiness []ReadinessCheck
	// Logger receives the access log and errors; nil logs JSON to standard error.
	Logger *slog.Logger
}

// server holds what the routes share.
type server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	tokens  *ConsistencyTokens
	limiter RateLimiter
	routes  []routeInfo
}

// routeInfo is one registered route, kept to answer 405 with an Allow header.
type routeInfo struct{ method, pattern string }

// New builds the fiber app with every route whose dependencies are in deps. It
// panics when a served part lacks a required dependency: that is a wiring mistake
// of the composition root, not a runtime condition.
func New(cfg Config, deps Deps) *fiber.App {
	cfg = cfg.withDefaults()
	s := &server{cfg: cfg, deps: deps, log: deps.Logger}
	if s.log == nil {
		s.log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	authed := deps.Commands != nil || deps.Editorial != nil || deps.Programs != nil
	if (authed || deps.Auth != nil) && deps.Tokens == nil {
		panic("api: Deps.Tokens is required to serve commands, editorial reads or /v1/auth")
	}
	for _, l := range []ratelimit.Limit{cfg.RateLimits.Auth, cfg.RateLimits.Plays, cfg.RateLimits.Public} {
		if err := l.Validate(); err != nil {
			panic("api: " + err.Error())
		}
	}
	s.limiter = deps.RateLimiter
	if deps.Commands != nil && deps.Idempotency == nil {
		panic("api: Deps.Idempotency is required to serve commands")
	}
	if cfg.IdempotencyLease <= cfg.CommandTimeout {
		panic("api: IdempotencyLease must exceed CommandTimeout, or a running command could lose its key")
	}
	if authed || deps.Discovery != nil {
		t, err := NewConsistencyTokens(cfg.ConsistencySecret)
		if err != nil {
			panic("api: " + err.Error())
		}
		s.tokens = t
	}
	if deps.Commands != nil {
		deps.Commands.mustBeComplete()
	}
	if deps.Editorial != nil {
		deps.Editorial.mustBeComplete()
	}
	if deps.Auth != nil {
		deps.Auth.mustBeComplete()
	}
	if deps.Assets != nil && deps.Assets.bodyLimit() > cfg.BodyLimit {
		cfg.BodyLimit = deps.Assets.bodyLimit() // uploads carry files up to Assets.MaxBytes
		s.cfg.BodyLimit = cfg.BodyLimit
	}

	f := fiber.New(fiber.Config{
		AppName:               "mediamesh",
		BodyLimit:             cfg.BodyLimit,
		ReadBufferSize:        DefaultRequestHeaderSize,
		CaseSensitive:         true,
		StrictRouting:         true,
		DisableStartupMessage: true,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		Network:               fiber.NetworkTCP,
		ErrorHandler:          s.errorHandler,
		// Uploads parse their multipart bodies themselves, strictly and in memory
		// (assets.go); fasthttp's own parse would run first and spill to temp files.
		DisablePreParseMultipartForm: true,
		// Only with the ingest route: feeds are streamed (ingest.go, streamBodies).
		StreamRequestBody: deps.Ingest != nil,
	})
	s.useObservability(f)
	f.Use(s.requestID, s.accessLog, s.recoverPanics)
	s.streamBodies(f)

	s.get(f, "/health/live", s.live)
	s.get(f, "/health/ready", s.ready)
	s.get(f, "/openapi.json", s.openAPI)
	if deps.Commands != nil {
		s.registerCommands(f)
	}
	if deps.Editorial != nil {
		s.registerEditorial(f)
	}
	if deps.Programs != nil {
		s.get(f, "/v1/cms/programs", s.authorize(RoleEditor), s.listPrograms)
	}
	if deps.Auth != nil {
		s.registerAuth(f)
	}
	if deps.Keys != nil {
		s.registerJWKS(f)
	}
	if deps.Assets != nil {
		s.registerAssets(f)
	}
	if deps.Discovery != nil {
		s.registerDiscovery(f)
	}
	if deps.Admin != nil {
		s.registerAdmin(f)
	}
	if deps.Ingest != nil {
		s.registerIngest(f)
	}
	s.registerMetrics(f)
	return f
}

func (s *server) get(f *fiber.App, pattern string, h ...fiber.Handler) {
	s.routes = append(s.routes, routeInfo{fiber.MethodGet, pattern}, routeInfo{fiber.MethodHead, pattern})
	f.Get(pattern, h...)
}

func (s *server) post(f *fiber.App, pattern string, h ...fiber.Handler) {
	s.routes = append(s.routes, routeInfo{fiber.MethodPost, pattern})
	f.Post(pattern, h...)
}

func (s *server) patch(f *fiber.App, pattern string, h ...fiber.Handler) {
	s.routes = append(s.routes, routeInfo{fiber.MethodPatch, pattern})
	f.Patch(pattern, h...)
}

func (c *Commands) mustBeComplete() {
	if c.CreateProgram == nil || c.UpdateProgram == nil || c.PublishProgram == nil ||
		c.UnpublishProgram == nil || c.ArchiveProgram == nil || c.AddEpisode == nil ||
		c.UpdateEpisode == nil || c.PublishEpisode == nil || c.UnpublishEpisode == nil ||
		c.ArchiveEpisode == nil {
		panic("api: Commands has a nil handler")
	}
}

func (e *Editorial) mustBeComplete() {
	if e.ProgramByID == nil || e.EpisodeByID == nil || e.ProgramHistory == nil {
		panic("api: Editorial has a nil handler")
	}
}
