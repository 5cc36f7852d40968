package rebuild

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
)

// Search returns the Definition of the search projection: version v folds the
// program streams into search_state_v<v> (through Versioned) and writes the index
// programs_v<v> (search.IndexName) through w. Its sinks are the state table and the
// index: Prepare creates the new version's empty index (so a query that switches
// early finds an index, never an error), Drop drops a replaced version's index
// through admin. The query side reads search.IndexName(ServingVersion("search")).
func Search(pool *pgxpool.Pool, w search.Writer, admin search.Admin, codec *events.Codec) (Definition, error) {
	if w == nil || admin == nil {
		return Definition{}, errors.New("search definition: nil writer or admin")
	}
	base, err := search.New(w, codec)
	if err != nil {
		return Definition{}, err
	}
	tables, err := NewTables(pool, base.Sinks()...)
	if err != nil {
		return Definition{}, err
	}
	index := FuncSink{
		PrepareFunc: func(ctx context.Context, _, next int) error {
			return w.EnsureIndex(ctx, search.IndexName(next))
		},
		DropFunc: func(ctx context.Context, v int) error {
			return admin.DropIndex(ctx, search.IndexName(v))
		},
	}
	return Definition{
		Name:        base.Name(),
		Kind:        KindCatalog,
		BaseVersion: base.Version(),
		Projection: func(v int) (runtime.Projection, error) {
			p, err := search.New(indexWriter{w: w, from: search.IndexName(base.Version()), to: search.IndexName(v)}, codec)
			if err != nil {
				return nil, err
			}
			return Versioned(p, v)
		},
		Sinks: []Sink{tables, index},
	}, nil
}

// indexWriter sends a search projection's writes of index from to index to.
type indexWriter struct {
	w        search.Writer
	from, to string
}

func (x indexWriter) name(index string) (string, error) {
	if index != x.from {
		return "", fmt.Errorf("search index %q: this version writes only %q", index, x.from)
	}
	return x.to, nil
}

func (x indexWriter) EnsureIndex(ctx context.Context, index string) error {
	n, err := x.name(index)
	if err != nil {
		return err
	}
	return x.w.EnsureIndex(ctx, n)
}

func (x indexWriter) Upsert(ctx context.Context, index string, docs []search.Document) error {
	n, err := x.name(index)
	if err != nil {
		return err
	}
	return x.w.Upsert(ctx, n, docs)
}

func (x indexWriter) Delete(ctx context.Context, index string, ts []search.Tombstone) error {
	n, err := x.name(index)
	if err != nil {
		return err
	}
	return x.w.Delete(ctx, n, ts)
}
