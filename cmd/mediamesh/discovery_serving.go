package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/rebuild"
	"github.com/mediamesh/mediamesh/projections/search"
	qapp "github.com/mediamesh/mediamesh/query/app"
	"github.com/mediamesh/mediamesh/query/cache"
)

// servingVersions are the versions of the projections discovery reads.
type servingVersions struct{ catalog, search int }

func (v servingVersions) String() string {
	return fmt.Sprintf("catalog v%d, search v%d", v.catalog, v.search)
}

// discoveryWarmTimeout bounds the warm-up of a new version's caches before it is
// swapped in: a slow warm-up delays the swap, never forever.
const discoveryWarmTimeout = 10 * time.Second

// discoveryStack is the read side of one pair of serving versions: its cache
// (in front of its read models) and the cancel of its invalidation loop.
type discoveryStack struct {
	*cache.Discovery
	versions servingVersions
	stop     func()
}

// servingDiscovery serves discovery from the serving versions of the catalog and
// search projections.
//
// Decisions:
//
//   - A rebuild switches a projection's serving version in PostgreSQL and notifies
//     (projections/rebuild); the process's Watcher sees it, whichever process made
//     the switch. The hook builds the new versions' stack (tables, search index,
//     Redis key space, a fresh in-process cache), warms its top programs, and only
//     then swaps it in: requests never see a cold or half-built read side, and
//     nothing cached from the old version is served after the swap.
//   - Requests in flight on the old stack finish on it: the old tables are kept for
//     the rebuild's grace period. The old stack's invalidation loop stops a little
//     after the swap.
//   - Switches are serialized, and each builds from the watcher's latest versions,
//     so a burst of switches ends on the last one.
type servingDiscovery struct {
	cur     atomic.Pointer[discoveryStack]
	build   func(context.Context, servingVersions) (*cache.Discovery, error)
	watcher *rebuild.Watcher
	log     *slog.Logger

	ctx    context.Context // ends with the process: the stacks' loops run under it
	cancel context.CancelFunc
	mu     sync.Mutex // serializes switch
	wg     sync.WaitGroup
}

// newServingDiscovery builds the stack of the versions serving now, starts its
// loops and its warm-up, and follows the watcher's switches.
func newServingDiscovery(ctx context.Context, pool *pgxpool.Pool, watcher *rebuild.Watcher,
	build func(context.Context, servingVersions) (*cache.Discovery, error), log *slog.Logger) (*servingDiscovery, error) {
	v, err := currentServing(ctx, pool)
	if err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &servingDiscovery{build: build, watcher: watcher, log: log, ctx: bg, cancel: cancel}
	st, err := s.start(v)
	if err != nil {
		cancel()
		return nil, err
	}
	s.cur.Store(st)
	s.wg.Go(func() {
		n, err := st.Warm(bg, queryWarmPrograms)
		if err != nil {
			log.Warn("discovery cache warm-up", "warmed", n, "error", err.Error())
			return
		}
		log.Info("discovery cache warmed", "programs", n)
	})
	watcher.OnSwitch(func(_ context.Context, name string, _, _ int) {
		if name != catalog.Name && name != search.Name {
			return
		}
		s.follow()
	})
	// A switch between reading the versions above and the watcher's first load
	// fires no hook: compare once the watcher has loaded.
	s.wg.Go(func() {
		select {
		case <-watcher.Loaded():
			s.follow()
		case <-bg.Done():
		}
	})
	return s, nil
}

// currentServing reads the serving versions (version 1 for a projection that
// never ran).
func currentServing(ctx context.Context, pool *pgxpool.Pool) (servingVersions, error) {
	v := servingVersions{catalog: catalog.Version, search: search.Version}
	for _, p := range []struct {
		name string
		dst  *int
	}{{catalog.Name, &v.catalog}, {search.Name, &v.search}} {
		n, err := rebuild.ServingVersion(ctx, pool, p.name)
		if errors.Is(err, rebuild.ErrNotServing) {
			continue
		}
		if err != nil {
			return v, err
		}
		*p.dst = n
	}
	return v, nil
}

// start builds the stack of v and runs its invalidation loop.
func (s *servingDiscovery) start(v servingVersions) (*discoveryStack, error) {
	d, err := s.build(s.ctx, v)
	if err != nil {
		return nil, fmt.Errorf("discovery on %s: %w", v, err)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("discovery cache stopped", "versions", v.String(), "error", err.Error())
		}
	}()
	return &discoveryStack{Discovery: d, versions: v, stop: func() { cancel(); <-done }}, nil
}

// follow swaps in the stack of the watcher's current versions, if they changed.
func (s *servingDiscovery) follow() {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	v := servingVersions{
		catalog: s.watcher.Version(catalog.Name, old.versions.catalog),
		search:  s.watcher.Version(search.Name, old.versions.search),
	}
	if v == old.versions || s.ctx.Err() != nil {
		return
	}
	st, err := s.start(v)
	if err != nil {
		s.log.Error("discovery: switch versions", "from", old.versions.String(), "to", v.String(), "error", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, discoveryWarmTimeout)
	n, err := st.Warm(ctx, queryWarmPrograms)
	cancel()
	if err != nil {
		s.log.Warn("discovery: warm-up of the new versions", "versions", v.String(), "warmed", n, "error", err.Error())
	}
	s.cur.Store(st)
	s.log.Info("discovery switched", "from", old.versions.String(), "to", v.String(), "warmed", n)
	old.stop()
}

// close stops the loops of the serving stack.
func (s *servingDiscovery) close() {
	s.cancel()
	s.wg.Wait() // before taking mu: a follow in wg may be waiting for it
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur.Load().stop()
}

// Versions returns the versions being served.
func (s *servingDiscovery) Versions() servingVersions { return s.cur.Load().versions }

// The api.Discovery methods: each request runs on the stack serving when it began.

func (s *servingDiscovery) ProgramByID(ctx context.Context, q qapp.ProgramByID) (qapp.Answer, error) {
	return s.cur.Load().ProgramByID(ctx, q)
}

func (s *servingDiscovery) ProgramEpisodes(ctx context.Context, q qapp.ProgramEpisodes) (qapp.Answer, error) {
	return s.cur.Load().ProgramEpisodes(ctx, q)
}

func (s *servingDiscovery) EpisodeByID(ctx context.Context, q qapp.EpisodeByID) (qapp.Answer, error) {
	return s.cur.Load().EpisodeByID(ctx, q)
}

func (s *servingDiscovery) BrowsePrograms(ctx context.Context, q qapp.BrowsePrograms) (qapp.Answer, error) {
	return s.cur.Load().BrowsePrograms(ctx, q)
}

func (s *servingDiscovery) Search(ctx context.Context, q qapp.Search) (qapp.Answer, error) {
	return s.cur.Load().Search(ctx, q)
}

func (s *servingDiscovery) Trending(ctx context.Context, q qapp.Ranked) (qapp.Answer, error) {
	return s.cur.Load().Trending(ctx, q)
}

func (s *servingDiscovery) Popular(ctx context.Context, q qapp.Ranked) (qapp.Answer, error) {
	return s.cur.Load().Popular(ctx, q)
}

func (s *servingDiscovery) Categories(ctx context.Context, q qapp.Categories) (qapp.Answer, error) {
	return s.cur.Load().Categories(ctx, q)
}

func (s *servingDiscovery) RecordPlay(ctx context.Context, q qapp.RecordPlay) error {
	return s.cur.Load().RecordPlay(ctx, q)
}

func (s *servingDiscovery) CurrentPosition() int64 { return s.cur.Load().CurrentPosition() }
