package postgres_test

import (
	"testing"

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
