// Package pgtest gives each test its own PostgreSQL database, created from a
// migrated template and dropped when the test ends, so that advisory locks, LISTEN
// channels and tables of parallel test packages cannot collide.
//
// The server is MEDIAMESH_TEST_DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable). A server that is not
// reachable fails the test with the command that starts it: PostgreSQL is a core
// dependency and its tests never skip.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/migrations"
)

// StartHint is the command that starts this machine's PostgreSQL.
const StartHint = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"

// ServerURL is the URL of the test server's maintenance database.
func ServerURL() string {
	if u := os.Getenv("MEDIAMESH_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// migrationsHash names the template after the migrations it holds, so a changed
// migration gets a fresh template instead of a stale one.
func migrationsHash() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12], err
}

func ensureTemplate(ctx context.Context, cfg *pgx.ConnConfig) (string, error) {
	templateOnce.Do(func() {
		var hash string
		hash, templateErr = migrationsHash()
		if templateErr != nil {
			return
		}
		templateName = "mediamesh_tmpl_" + hash
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			templateErr = err
			return
		}
		defer conn.Close(ctx)
		// Serialize template creation across test binaries running in parallel.
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(727172)"); err != nil {
			templateErr = err
			return
		}
		defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock(727172)") //nolint:errcheck
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", templateName).Scan(&exists); err != nil {
			templateErr = err
			return
		}
		if exists {
			return
		}
		building := templateName + "_building"
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{building}.Sanitize()+" WITH (FORCE)")
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{building}.Sanitize()); err != nil {
			templateErr = err
			return
		}
		tcfg := cfg.Copy()
		tcfg.Database = building
		pcfg, _ := pgxpool.ParseConfig("")
		pcfg.ConnConfig = tcfg
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			templateErr = err
			return
		}
		templateErr = postgres.Migrate(ctx, pool)
		pool.Close()
		if templateErr != nil {
			return
		}
		_, templateErr = conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{building}.Sanitize()+" RENAME TO "+pgx.Identifier{templateName}.Sanitize())
	})
	return templateName, templateErr
}

// NewDB creates a fresh, migrated database for t and returns a pool on it and its
// URL. The database is dropped when t ends.
func NewDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(ServerURL())
	if err != nil {
		t.Fatalf("MEDIAMESH_TEST_DATABASE_URL: %v", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("PostgreSQL is not reachable at %s:%d (%v).\nStart it with: %s", cfg.Host, cfg.Port, err, StartHint)
	}
	conn.Close(ctx)
	tmpl, err := ensureTemplate(ctx, cfg)
	if err != nil {
		t.Fatalf("build template database: %v", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "mm_test_" + sanitize(t.Name()) + "_" + hex.EncodeToString(rnd[:])
	if err := postgres.CreateDatabase(ctx, cfg, name, tmpl); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	dcfg := cfg.Copy()
	dcfg.Database = name
	url := withDatabase(ServerURL(), name)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	return pool, url
}

// withDatabase returns url with its database name replaced.
func withDatabase(url, name string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return url
	}
	q := ""
	if i := strings.IndexByte(url, '?'); i >= 0 {
		q = url[i:]
	}
	user := cfg.User
	if cfg.Password != "" {
		user += ":" + cfg.Password
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s%s", user, cfg.Host, cfg.Port, name, q)
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 30 {
			break
		}
	}
	return b.String()
}
