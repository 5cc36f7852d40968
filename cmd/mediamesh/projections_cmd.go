package main

import (
	"context"
	"errors"
	"sync"

	"github.com/mediamesh/mediamesh/infra/opscli"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// runProjections runs `mediamesh projections status|rebuild NAME [--wait]|dlq
// list|replay` (infra/opscli) against a projection manager built exactly as the
// servers build theirs, so names, kinds and sinks agree. The manager is not run
// here: status and dead letters are read from the database, a rebuild is recorded
// for a running projector (serve --role all or projector) to drive, and
// `dlq replay` re-applies dead letters under the projection's checkpoint lock,
// safe beside running projectors. The database is opened only once a command
// needs it, so usage errors answer without one.
func runProjections(ctx context.Context, e env, args []string) error {
	admin := &lazyAdmin{open: func() (*rebuild.Manager, func(), error) {
		cfg, log, err := setup(e)
		if err != nil {
			return nil, nil, err
		}
		d, err := openDeps(ctx, cfg, log)
		if err != nil {
			return nil, nil, err
		}
		m, _, err := newProjectionManager(cfg, d, log)
		if err != nil {
			d.close()
			return nil, nil, err
		}
		return m, d.close, nil
	}}
	defer admin.close()
	err := opscli.Projections(ctx, e.stdout, e.stderr, withThumbnails(admin, e), args)
	if errors.Is(err, opscli.ErrUsage) {
		return errUsage
	}
	return err
}

// lazyAdmin is an opscli.Admin that builds its manager on first use.
type lazyAdmin struct {
	open    func() (*rebuild.Manager, func(), error)
	once    sync.Once
	m       *rebuild.Manager
	closeFn func()
	err     error
}

func (a *lazyAdmin) get() (*rebuild.Manager, error) {
	a.once.Do(func() { a.m, a.closeFn, a.err = a.open() })
	return a.m, a.err
}

func (a *lazyAdmin) close() {
	if a.closeFn != nil {
		a.closeFn()
	}
}

func (a *lazyAdmin) Status(ctx context.Context) ([]rebuild.Status, error) {
	m, err := a.get()
	if err != nil {
		return nil, err
	}
	return m.Status(ctx)
}

func (a *lazyAdmin) StartRebuild(ctx context.Context, name string) (string, error) {
	m, err := a.get()
	if err != nil {
		return "", err
	}
	return m.StartRebuild(ctx, name)
}

func (a *lazyAdmin) Progress(ctx context.Context, name string) (rebuild.Progress, error) {
	m, err := a.get()
	if err != nil {
		return rebuild.Progress{}, err
	}
	return m.Progress(ctx, name)
}

func (a *lazyAdmin) DeadLetters(ctx context.Context, name string, limit int) ([]runtime.DeadLetter, error) {
	m, err := a.get()
	if err != nil {
		return nil, err
	}
	return m.DeadLetters(ctx, name, limit)
}

func (a *lazyAdmin) Replay(ctx context.Context, name string) (runtime.ReplayResult, error) {
	m, err := a.get()
	if err != nil {
		return runtime.ReplayResult{}, err
	}
	return m.Replay(ctx, name)
}
