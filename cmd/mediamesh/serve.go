package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/mediamesh/mediamesh/infra/config"
)

// serveRole is one role of `serve --role`; available marks those this build runs.
type serveRole struct {
	name      string
	available bool
}

// serveRoles lists every role in the order the help shows them.
func serveRoles() []serveRole {
	return []serveRole{
		{"all", true}, {"command", true}, {"query", true}, {"relay", true}, {"projector", true}, {"ingest", true},
	}
}

func roleNames() string {
	roles := serveRoles()
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = r.name
	}
	return strings.Join(names, "|")
}

// runServe runs the HTTP roles until SIGINT or SIGTERM, then shuts down gracefully:
// it stops accepting connections, lets in-flight requests finish within
// MEDIAMESH_SHUTDOWN_TIMEOUT, and closes the database pools last.
func runServe(ctx context.Context, e env, args []string) error {
	fs := newFlags(e, "serve", "[--role "+roleNames()+"]")
	role := fs.String("role", "all", "role to run: "+roleNames())
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprintln(e.stderr, "\nEnvironment (an empty variable takes the default):")
		_ = config.WriteHelp(e.stderr)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	known, available := false, false
	for _, r := range serveRoles() {
		if r.name == *role {
			known, available = true, r.available
		}
	}
	if !known || fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "mediamesh serve: unknown role %q (want %s)\n", *role, roleNames())
		return errUsage
	}
	if !available {
		return fmt.Errorf("role %q is not yet available in this build: run --role all, command, query, relay or projector", *role)
	}
	cfg, log, err := setup(e)
	if err != nil {
		return err
	}
	if *role == "relay" && cfg.Bus != config.BusKafka {
		return errRelayNeedsKafka // before touching any database
	}
	log.Info("starting mediamesh", "version", version, "role", *role, "config", cfg)
	srv, err := startServerWith(ctx, cfg, log, *role, e.getenv)
	if err != nil {
		return err
	}
	log.Info("listening", "addr", srv.addr.String(), "url", srv.baseURL)
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	case err := <-srv.done:
		_ = srv.stop()
		if err == nil {
			err = errors.New("listener closed")
		}
		return fmt.Errorf("http server: %w", err)
	}
	if err := srv.stop(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// runningServer is a started HTTP role and what it holds open.
type runningServer struct {
	baseURL string
	addr    net.Addr
	app     *fiber.App
	deps    *deps
	// done receives the listener's error if it stops on its own.
	done            chan error
	shutdownTimeout time.Duration
	log             *slog.Logger
}

// startServer opens the dependencies of role, builds its HTTP app, and starts
// serving on cfg.HTTPAddr (":0" or "127.0.0.1:0" picks a free port; addr tells
// which). bench uses it to run the real server in-process.
func startServer(ctx context.Context, cfg config.Config, log *slog.Logger, role string) (*runningServer, error) {
	return startServerWith(ctx, cfg, log, role, nil)
}

// startServerWith is startServer with the process environment, from which the
// standard OTEL_* variables configure tracing (nil: tracing off). It builds the
// process's observability before anything else, so the event store every part
// uses is the instrumented one.
func startServerWith(ctx context.Context, cfg config.Config, log *slog.Logger, role string, getenv func(string) string) (*runningServer, error) {
	if runs(role, "ingest") {
		// The ingest worker's subscriber and items in flight each hold a connection.
		cfg.DatabaseURL = withPoolConns(cfg.DatabaseURL, ingestPoolConns)
	}
	d, err := openDeps(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	if d.obs, err = newObservability(ctx, getenv, d, log); err != nil {
		d.close()
		return nil, err
	}
	var app *fiber.App
	switch role {
	case "projector":
		app, err = newProjectorHTTP(ctx, cfg, d, log)
	case "relay":
		app, err = newRelayHTTP(ctx, cfg, d, log)
	case "query":
		app, err = newQueryHTTP(ctx, cfg, d, log)
	case "ingest":
		app, err = newIngestHTTP(ctx, cfg, d, log)
	default:
		app, err = newHTTP(ctx, cfg, d, log, role)
		if err == nil && role == "all" && cfg.Bus == config.BusKafka {
			// Every role in one process includes the relay (kafka.go, relay.go).
			_, err = startRelay(ctx, cfg, d, log)
		}
		if err == nil && role == "all" {
			_, err = startIngestWorker(ctx, cfg, d, log)
		}
	}
	if err == nil && runs(role, "projector") {
		err = startEngagement(ctx, cfg, d, log) // query.go
	}
	if err != nil {
		d.close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		d.close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	s := &runningServer{addr: ln.Addr(), app: app, deps: d, done: make(chan error, 1), shutdownTimeout: cfg.ShutdownTimeout, log: log}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	s.baseURL = "http://" + net.JoinHostPort(host, port)
	go func() {
		if err := app.Listener(ln); err != nil {
			s.done <- err
		}
		close(s.done)
	}()
	return s, nil
}

// stop shuts the HTTP server down gracefully within the shutdown timeout, then
// closes the dependencies. It is safe to call once.
func (s *runningServer) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	err := s.app.ShutdownWithContext(ctx)
	s.deps.close()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err != nil {
		s.log.Warn("shutdown timed out; open connections were closed", "timeout", s.shutdownTimeout.String())
	}
	return nil
}
