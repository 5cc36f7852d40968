package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
)

// openMigrated connects to url (creating the database when missing) and applies
// every pending migration.
func openMigrated(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := pginfra.Connect(ctx, url, true)
	if err != nil {
		return nil, err
	}
	if err := pginfra.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// scratchDatabase drops and recreates database name on the server of serverURL and
// returns its URL (with pool_max_conns set to poolSize unless the URL sets it) and a
// function that drops it again. It refuses to touch serverURL's own database.
func scratchDatabase(ctx context.Context, log *slog.Logger, serverURL, name string, poolSize int) (string, func(), error) {
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("scratch database: %w", err)
	}
	if cfg.Database == name {
		return "", nil, fmt.Errorf("scratch database %q is the configured database: choose another --database", name)
	}
	admin := cfg.Copy()
	admin.Database = "postgres"
	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.ConnectConfig(ctx, admin)
		if err != nil {
			return fmt.Errorf("connect to %s:%d: %w", admin.Host, admin.Port, err)
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", nil, fmt.Errorf("drop scratch database %s: %w", name, err)
	}
	if err := exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", nil, fmt.Errorf("create scratch database %s: %w", name, err)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("scratch database: parse url: %w", err)
	}
	u.Path = "/" + name
	q := u.Query()
	if q.Get("pool_max_conns") == "" && poolSize > 0 {
		q.Set("pool_max_conns", strconv.Itoa(poolSize))
	}
	u.RawQuery = q.Encode()
	drop := func() {
		if err := exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			log.Warn("drop scratch database", "database", name, "error", err.Error())
		}
	}
	return u.String(), drop, nil
}

// newUUID returns a new time-ordered UUID (v7), as MediaMesh's own ids are.
func newUUID() string { return uuid.Must(uuid.NewV7()).String() }
