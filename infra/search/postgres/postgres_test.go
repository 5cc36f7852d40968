package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/infra/search/searchtest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	idx, err := searchpg.New(pool)
	if err != nil {
		t.Fatal(err)
	}
	searchtest.Run(t, idx)
}

func TestNewRejectsNilPool(t *testing.T) {
	t.Parallel()
	if _, err := searchpg.New(nil); err == nil {
		t.Fatal("New(nil) succeeded, want an error")
	}
}

// newIndex returns an adapter on a fresh database and the name of an index it has
// created there.
func newIndex(t *testing.T) (*pgxpool.Pool, *searchpg.Index, string) {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	idx, err := searchpg.New(pool)
	if err != nil {
		t.Fatal(err)
	}
	index := searchtest.NewIndexName(t, idx)
	if err := idx.EnsureIndex(context.Background(), index); err != nil {
		t.Fatal(err)
	}
	return pool, idx, index
}
