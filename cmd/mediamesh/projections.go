package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/meilisearch/meilisearch-go"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/config"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	"github.com/mediamesh/mediamesh/infra/search/meili"
	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/editorial"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
	qapp "github.com/mediamesh/mediamesh/query/app"
)

// searchIndex is what the projections need of a search index adapter: writes, and
// whole-index management for rebuilds. Both adapters implement it.
type searchIndex interface {
	search.Writer
	search.Admin
}

// newSearchIndex returns the configured search index adapter (MEDIAMESH_SEARCH):
// tables of the primary database, or a Meilisearch server. Neither does I/O here.
func newSearchIndex(cfg config.Config, d *deps) (searchIndex, error) {
	switch cfg.Search {
	case config.SearchPostgres:
		return searchpg.New(d.pool)
	case config.SearchMeilisearch:
		return meili.New(meilisearch.New(cfg.MeiliURL, meilisearch.WithAPIKey(cfg.MeiliKey.Reveal())))
	}
	return nil, fmt.Errorf("%s=%s: unknown search index", config.KeySearch, cfg.Search)
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

// servingWatcher returns the process's one Watcher of the projections' serving
// versions, starting it on first use (one LISTEN connection however many read
// sides follow a rebuild's switch).
func (d *deps) servingWatcher(ctx context.Context, log *slog.Logger) (*rebuild.Watcher, error) {
	if d.watcher != nil {
		return d.watcher, nil
	}
	w, err := rebuild.NewWatcher(d.pool, log)
	if err != nil {
		return nil, err
	}
	d.watcher = w
	d.background(ctx, log, "serving-version watcher", w.Run)
	return w, nil
}

// cmsPrograms serves GET /v1/cms/programs: the query side's list over the
// editorial projection's serving version, and the projection waiter for
// consistency tokens. A rebuild of the editorial projection makes another version
// serve: a Watcher follows the switch (in whichever process made it) and the list
// reads the new version's table from then on. The replaced table is kept for the
// rebuild's grace period, so a list in flight across the switch still finds it.
type cmsPrograms struct {
	pool   *pgxpool.Pool
	list   atomic.Pointer[qapp.CMSProgramsHandler]
	table  atomic.Pointer[string] // the editorial table the list reads
	waiter *runtime.Waiter
}

// newCMSPrograms builds the list on the serving version and starts the waiter's
// and the serving-version watcher's listeners.
func newCMSPrograms(ctx context.Context, d *deps, log *slog.Logger) (*cmsPrograms, error) {
	c := &cmsPrograms{pool: d.pool}
	v, err := rebuild.ServingVersion(ctx, d.pool, editorial.Name)
	if errors.Is(err, rebuild.ErrNotServing) {
		v, err = editorial.Version, nil
	}
	if err != nil {
		return nil, err
	}
	if err := c.use(v); err != nil {
		return nil, err
	}
	watcher, err := d.servingWatcher(ctx, log)
	if err != nil {
		return nil, err
	}
	watcher.OnSwitch(func(_ context.Context, name string, _, to int) {
		if name != editorial.Name || to < 1 {
			return
		}
		if err := c.use(to); err != nil {
			log.Error("editorial list: switch version", "version", to, "error", err.Error())
			return
		}
		log.Info("editorial list switched", "version", to)
	})
	w, err := runtime.NewWaiter(d.pool, log)
	if err != nil {
		return nil, err
	}
	d.background(ctx, log, "projection waiter", w.Run)
	c.waiter = w
	return c, nil
}

// use makes the list read version v of the editorial projection.
func (c *cmsPrograms) use(v int) error {
	table, err := rebuild.VersionedTable(readmodel.EditorialProgramsTable, v)
	if err != nil {
		return err
	}
	rm, err := readmodel.NewCMSPrograms(c.pool, table)
	if err != nil {
		return err
	}
	list, err := qapp.NewCMSProgramsHandler(rm)
	if err != nil {
		return err
	}
	c.list.Store(list)
	c.table.Store(&table)
	return nil
}

// ListPrograms implements api.ProgramLister.
func (c *cmsPrograms) ListPrograms(ctx context.Context, status, q string, page, limit int) (any, int, error) {
	p, err := c.list.Load().Handle(ctx, qapp.CMSProgramList{Status: status, Q: q, Page: page, Limit: limit})
	if err != nil {
		return nil, 0, err
	}
	return p.Items, p.Total, nil
}

// WaitFor implements api.ProgramLister: it returns once the editorial list
// includes the write. For a program stream (every program and episode command)
// that is checked exactly, as discovery checks it: the program's row holds the
// write's stream version. Between checks it waits for the projection's next
// commit (its checkpoint moving past what it was), never polling. The
// checkpoint alone would do in the embedded mode, where it is a watermark of the
// global log, but not under Kafka, where partitions are applied in any order. A
// write to another stream waits for the checkpoint to reach its position.
func (c *cmsPrograms) WaitFor(ctx context.Context, streamID string, version, position int64) error {
	programID, ok := strings.CutPrefix(streamID, events.ProgramStreamID(""))
	if !ok {
		return c.waiter.WaitForPosition(ctx, editorial.Name, position)
	}
	target := position
	for {
		var (
			includes   bool
			checkpoint int64
		)
		err := c.pool.QueryRow(ctx, `SELECT coalesce((SELECT version FROM `+pgx.Identifier{*c.table.Load()}.Sanitize()+
			` WHERE id = $1::uuid), 0) >= $2, coalesce((SELECT position FROM projection_checkpoints WHERE name = $3 AND serving), 0)`,
			programID, version, editorial.Name).Scan(&includes, &checkpoint)
		if err != nil {
			return fmt.Errorf("editorial list: check write %s@%d: %w", streamID, version, err)
		}
		if includes {
			return nil
		}
		target = max(target, checkpoint+1)
		if err := c.waiter.WaitForPosition(ctx, editorial.Name, target); err != nil {
			return err
		}
	}
}
