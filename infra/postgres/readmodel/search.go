package readmodel

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/projections/search"
	"github.com/mediamesh/mediamesh/query/app"
)

// SearchIndex implements app.SearchIndex over the search projection's Reader.
//
// A consistency token is checked against the search projection's checkpoint
// (position at or past the write's). With the PostgreSQL index (NewPostgresSearchIndex)
// the check and the search run on the same database, replica or primary, so the
// check is exact for what is searched; with another engine (NewSearchIndex) the
// checkpoint is read on the primary, where the search projection records it.
type SearchIndex struct {
	index      string
	projection string
	router     *Router
	// readerFor returns the reader of a database (PostgreSQL index), or nil when
	// the index lives elsewhere (then reader is used and checks go to the primary).
	readerFor func(db *pgxpool.Pool) (search.Reader, error)
	reader    search.Reader

	mu      sync.Mutex
	readers map[*pgxpool.Pool]search.Reader
}

// NewPostgresSearchIndex searches the PostgreSQL index named index (e.g.
// search.IndexName(1)) through the router; newReader builds a reader on one
// database (infra/search/postgres.New).
func NewPostgresSearchIndex(r *Router, index string, newReader func(db *pgxpool.Pool) (search.Reader, error)) (*SearchIndex, error) {
	if r == nil || newReader == nil {
		return nil, errors.New("search index: nil router or reader constructor")
	}
	if err := search.ValidateIndexName(index); err != nil {
		return nil, err
	}
	return &SearchIndex{index: index, projection: app.ProjectionSearch, router: r, readerFor: newReader, readers: map[*pgxpool.Pool]search.Reader{}}, nil
}

// NewSearchIndex searches index through reader (any engine, e.g. Meilisearch);
// consistency tokens are checked on the router's primary.
func NewSearchIndex(reader search.Reader, index string, r *Router) (*SearchIndex, error) {
	if reader == nil || r == nil {
		return nil, errors.New("search index: nil reader or router")
	}
	if err := search.ValidateIndexName(index); err != nil {
		return nil, err
	}
	return &SearchIndex{index: index, projection: app.ProjectionSearch, router: r, reader: reader}, nil
}

func (s *SearchIndex) readerOf(db *pgxpool.Pool) (search.Reader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rd, ok := s.readers[db]; ok {
		return rd, nil
	}
	rd, err := s.readerFor(db)
	if err != nil {
		return nil, fmt.Errorf("search reader: %w", err)
	}
	s.readers[db] = rd
	return rd, nil
}

// includes reads the search projection's checkpoint on db and compares it with
// after's position. The checkpoint is read for every search, token or not: the
// cache compares it with the documents sink's position to decide how long the
// answer may be kept.
func (s *SearchIndex) includes(ctx context.Context, db *pgxpool.Pool, after *app.WritePoint) (app.Snapshot, error) {
	snap := app.Snapshot{Source: app.SourceSearch, Includes: true}
	if err := db.QueryRow(ctx, `SELECT COALESCE((SELECT position FROM projection_checkpoints WHERE name = $1 AND serving), 0)`,
		s.projection).Scan(&snap.Position); err != nil {
		return snap, fmt.Errorf("read search checkpoint: %w", err)
	}
	snap.Includes = after == nil || snap.Position >= after.Position
	return snap, nil
}

// Search implements app.SearchIndex.
func (s *SearchIndex) Search(ctx context.Context, q app.SearchQuery, after *app.WritePoint) (app.SearchHits, app.Snapshot, error) {
	sq := search.Query{Text: q.Text, Category: q.Category, Language: q.Language, Page: q.Page, Limit: q.Limit}
	if s.readerFor == nil {
		snap, err := s.includes(ctx, s.router.Primary(), after)
		if err != nil || !snap.Includes {
			return app.SearchHits{}, snap, err
		}
		res, err := s.reader.Search(ctx, s.index, sq)
		return hitsOf(res, err)(snap)
	}
	return routed(ctx, s.router, func(ctx context.Context, db *pgxpool.Pool) (app.SearchHits, app.Snapshot, error) {
		snap, err := s.includes(ctx, db, after)
		if err != nil || !snap.Includes {
			return app.SearchHits{}, snap, err
		}
		rd, err := s.readerOf(db)
		if err != nil {
			return app.SearchHits{}, snap, err
		}
		res, err := rd.Search(ctx, s.index, sq)
		return hitsOf(res, err)(snap)
	})
}

func hitsOf(res search.Result, err error) func(app.Snapshot) (app.SearchHits, app.Snapshot, error) {
	return func(snap app.Snapshot) (app.SearchHits, app.Snapshot, error) {
		if errors.Is(err, search.ErrIndexNotFound) {
			// No index yet (nothing was ever published): nothing matches.
			return app.SearchHits{IDs: []string{}, Facets: map[string]map[string]int{}}, snap, nil
		}
		if err != nil {
			return app.SearchHits{}, snap, fmt.Errorf("search: %w", err)
		}
		return app.SearchHits{IDs: res.IDs, Total: res.Total, Facets: res.Facets}, snap, nil
	}
}
