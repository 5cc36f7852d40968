package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/mediamesh/mediamesh/infra/postgres/readmodel"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	"github.com/mediamesh/mediamesh/projections/runtime"
	qapp "github.com/mediamesh/mediamesh/query/app"
)

// catalogProjections are the projections the embedded runtime feeds from the event
// store's global log.
func catalogProjections() []runtime.Projection {
	return []runtime.Projection{editorial.New(nil), catalog.New(nil)}
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
func startProjections(ctx context.Context, d *deps, log *slog.Logger) error {
	rt, err := runtime.New(d.pool, d.store, catalogProjections(), runtime.Options{Logger: log})
	if err != nil {
		return err
	}
	d.background(ctx, log, "projection runtime", rt.Run)
	log.Info("projections running", "projections", len(catalogProjections()))
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
