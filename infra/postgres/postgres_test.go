package postgres_test

import (
	"context"
	"testing"

	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

func TestMigrationsAppliedAndIdempotent(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	ctx := context.Background()
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	st, err := postgres.MigrationsStatus(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) == 0 {
		t.Fatal("no migrations embedded")
	}
	for _, s := range st {
		if !s.Applied {
			t.Errorf("migration %d (%s) not applied", s.Version, s.Source)
		}
	}
}

func TestConnectCreatesMissingDatabase(t *testing.T) {
	t.Parallel()
	_, url := pgtest.NewDB(t) // a URL whose server is reachable
	ctx := context.Background()
	// Point at a database that does not exist yet, beside the test one.
	missing := url[:len(url)-len("?sslmode=disable")] + "_new?sslmode=disable"
	pool, err := postgres.Connect(ctx, missing, true)
	if err != nil {
		t.Fatalf("connect with create: %v", err)
	}
	var name string
	if err := pool.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	pool.Close()
	admin, err := postgres.Connect(ctx, pgtest.ServerURL(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.Exec(ctx, `DROP DATABASE "`+name+`" WITH (FORCE)`); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Connect(ctx, missing, false); err == nil {
		t.Fatal("connect without create to a missing database succeeded")
	}
}
