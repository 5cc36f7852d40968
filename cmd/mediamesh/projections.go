package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/meilisearch/meilisearch-go"

	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	"github.com/mediamesh/mediamesh/infra/search/meili"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
	qapp "github.com/mediamesh/mediamesh/query/app"
)

// catalogProjections are the projections the embedded runtime feeds from the event
// store's global log; search writes the configured search index.
func catalogProjections(searchIndex *search.Projection) []runtime.Projection {
	return []runtime.Projection{editorial.New(nil), catalog.New(nil), searchIndex}
}

// newSearchIndex returns the configured search index adapter (MEDIAMESH_SEARCH):
// tables of the primary database, or a Meilisearch server. Neither does I/O here.
func newSearchIndex(cfg config.Config, d *deps) (search.Writer, error) {
	switch cfg.Search {
	case config.SearchPostgres:
		return searchpg.New(d.pool)
	case config.SearchMeilisearch:
		return meili.New(meilisearch.New(cfg.MeiliURL, meilisearch.WithAPIKey(cfg.MeiliKey.Reveal())))
	}
	return nil, fmt.Errorf("%s=%s: unknown search index", config.KeySearch, cfg.Search)
}

// newSearchProjection builds the search projection and creates its index when it
// does not exist yet, so searches find an empty index before the first event: a
// search index that cannot be reached fails the start, as the database does.
func newSearchProjection(ctx context.Context, cfg config.Config, d *deps) (*search.Projection, error) {
	w, err := newSearchIndex(cfg, d)
	if err != nil {
		return nil, err
	}
	p, err := search.New(w, nil)
	if err != nil {
		return nil, err
	}
	if err := p.Setup(ctx); err != nil {
		return nil, fmt.Errorf("%s=%s: %w", config.KeySearch, cfg.Search, err)
	}
	return p, nil
}

// background runs fn until the deps are closed: close cancels its context and
// waits for it to return, so shutdown never leaves a goroutine writing to a
// closed pool.
func (d *deps) background(ctx context.Context, log *slog.Logger, name string, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			log.Error(name+" stopped", "error", err.Error())
		}
	}()
	d.closers = append(d.closers, func() { cancel(); wg.Wait() })
}

// startProjections runs the projection runtime in this process (the embedded mode's
// projector).
func startProjections(ctx context.Context, cfg config.Config, d *deps, log *slog.Logger) error {
	searchIndex, err := newSearchProjection(ctx, cfg, d)
	if err != nil {
		return err
	}
	projs := catalogProjections(searchIndex)
	rt, err := runtime.New(d.pool, d.store, projs, runtime.Options{Logger: log})
	if err != nil {
		return err
	}
	d.background(ctx, log, "projection runtime", rt.Run)
	names := make([]string, len(projs))
	for i, p := range projs {
		names[i] = fmt.Sprintf("%s.v%d", p.Name(), p.Version())
	}
	log.Info("projections running", "projections", names, "search", string(cfg.Search), "search_index", searchIndex.Index())
	return nil
}

// cmsPrograms serves GET /v1/cms/programs: the query side's list over the
// editorial projection, and the projection waiter for consistency tokens.
type cmsPrograms struct {
	list   *qapp.CMSProgramsHandler
	waiter *runtime.Waiter
}

// newCMSPrograms builds the list and starts the waiter's listener.
func newCMSPrograms(ctx context.Context, d *deps, log *slog.Logger) (*cmsPrograms, error) {
	rm, err := readmodel.NewCMSPrograms(d.pool, "")
	if err != nil {
		return nil, err
	}
	list, err := qapp.NewCMSProgramsHandler(rm)
	if err != nil {
		return nil, err
	}
	w, err := runtime.NewWaiter(d.pool, log)
	if err != nil {
		return nil, err
	}
	d.background(ctx, log, "projection waiter", w.Run)
	return &cmsPrograms{list: list, waiter: w}, nil
}

// ListPrograms implements api.ProgramLister.
func (c *cmsPrograms) ListPrograms(ctx context.Context, status, q string, page, limit int) (any, int, error) {
	p, err := c.list.Handle(ctx, qapp.CMSProgramList{Status: status, Q: q, Page: page, Limit: limit})
	if err != nil {
		return nil, 0, err
	}
	return p.Items, p.Total, nil
}

// WaitFor implements api.ProgramLister: the editorial projection's checkpoint
// reaching the write's global position includes the write (one global log).
func (c *cmsPrograms) WaitFor(ctx context.Context, streamID string, version, position int64) error {
	return c.waiter.WaitForPosition(ctx, editorial.Name, position)
}
