package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// DiscoveryDeps are the read models the discovery queries read. Every field but
// Waiter and Plays is required.
type DiscoveryDeps struct {
	Programs    ProgramReadModel
	Episodes    EpisodesReadModel
	Episode     EpisodeReadModel
	Browse      BrowseReadModel
	Categories  CategoriesReadModel
	Search      SearchIndex
	Rankings    RankingReadModel
	Checkpoints CheckpointReader
	// Waiter wakes consistency-token reads when a projection moves; without it a
	// read that does not include the token's write is a 503 at once.
	Waiter ProjectionWaiter
	// Plays publishes POST /v1/plays; without it RecordPlay is ErrUnavailable.
	Plays PlayPublisher
}

// DiscoveryOptions tune the discovery queries; zero values take the defaults.
type DiscoveryOptions struct {
	// CDNBaseURL, when set, prefixes relative asset URLs instead of the request's
	// scheme and host (MEDIAMESH_CDN_BASE_URL).
	CDNBaseURL string
	// ConsistencyWait bounds the wait for a consistency token (2 s).
	ConsistencyWait time.Duration
	// ReadTimeout bounds one query's reads (10 s); a consistency wait is bounded
	// by ConsistencyWait within it.
	ReadTimeout time.Duration
	// Now is the clock of plays (time.Now).
	Now func() time.Time
}

// core is what every discovery handler shares.
type core struct {
	waiter    ProjectionWaiter
	wait      time.Duration
	timeout   time.Duration
	cdnBase   string
	positions *Positions
}

// bound limits a query's reads to the read timeout.
func (c *core) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// base is the prefix of relative asset URLs for a request whose own base is req.
func (c *core) base(req string) string {
	if c.cdnBase != "" {
		return c.cdnBase
	}
	return req
}

// answer wraps a rendered response with the position to report.
func (c *core) answer(res *Response, consistent bool) Answer {
	return Answer{Response: res, Position: c.position(res.Snapshot), Consistent: consistent}
}

// projectionOf names the projection behind a source.
func projectionOf(s Source) string {
	switch s {
	case SourceRedis:
		return ProjectionDocuments
	case SourceSearch:
		return ProjectionSearch
	}
	return ProjectionCatalog
}

// position records a snapshot's position and returns the highest one known for
// its projection (the catalog's when that projection's is unknown).
func (c *core) position(s Snapshot) int64 {
	name := projectionOf(s.Source)
	pos := c.positions.Observe(name, s.Position)
	if pos == 0 && name != ProjectionCatalog {
		pos = c.positions.Get(ProjectionCatalog)
	}
	return pos
}

// Discovery is the uncached discovery service: every query reads its read model.
// The api serves it directly (the caches off) or through query/cache, which
// implements the same methods over it.
type Discovery struct {
	c          *core
	program    *ProgramByIDHandler
	episodes   *ProgramEpisodesHandler
	episode    *EpisodeByIDHandler
	browse     *BrowseProgramsHandler
	search     *SearchHandler
	trending   *RankedHandler
	popular    *RankedHandler
	categories *CategoriesHandler
	plays      PlayPublisher
	now        func() time.Time
	checks     CheckpointReader
}

// NewDiscovery returns the service over deps.
func NewDiscovery(deps DiscoveryDeps, opts DiscoveryOptions) (*Discovery, error) {
	if deps.Programs == nil || deps.Episodes == nil || deps.Episode == nil || deps.Browse == nil ||
		deps.Categories == nil || deps.Search == nil || deps.Rankings == nil || deps.Checkpoints == nil {
		return nil, errors.New("discovery: a required read model is nil")
	}
	if opts.ConsistencyWait <= 0 {
		opts.ConsistencyWait = DefaultConsistencyWait
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &core{waiter: deps.Waiter, wait: opts.ConsistencyWait, timeout: opts.ReadTimeout, cdnBase: strings.TrimSuffix(opts.CDNBaseURL, "/"), positions: &Positions{}}
	return &Discovery{
		c:          c,
		program:    &ProgramByIDHandler{c: c, rm: deps.Programs},
		episodes:   &ProgramEpisodesHandler{c: c, rm: deps.Episodes},
		episode:    &EpisodeByIDHandler{c: c, rm: deps.Episode},
		browse:     &BrowseProgramsHandler{c: c, rm: deps.Browse},
		search:     &SearchHandler{c: c, index: deps.Search, programs: deps.Programs},
		trending:   &RankedHandler{c: c, ranking: RankingTrending, rankings: deps.Rankings, programs: deps.Programs},
		popular:    &RankedHandler{c: c, ranking: RankingPopular, rankings: deps.Rankings, programs: deps.Programs},
		categories: &CategoriesHandler{c: c, rm: deps.Categories},
		plays:      deps.Plays,
		now:        opts.Now,
		checks:     deps.Checkpoints,
	}, nil
}

// ProgramByID answers GET /v1/programs/{id}.
func (d *Discovery) ProgramByID(ctx context.Context, q ProgramByID) (Answer, error) {
	return d.program.Handle(ctx, q)
}

// ProgramEpisodes answers GET /v1/programs/{id}/episodes.
func (d *Discovery) ProgramEpisodes(ctx context.Context, q ProgramEpisodes) (Answer, error) {
	return d.episodes.Handle(ctx, q)
}

// EpisodeByID answers GET /v1/episodes/{id}.
func (d *Discovery) EpisodeByID(ctx context.Context, q EpisodeByID) (Answer, error) {
	return d.episode.Handle(ctx, q)
}

// BrowsePrograms answers GET /v1/programs.
func (d *Discovery) BrowsePrograms(ctx context.Context, q BrowsePrograms) (Answer, error) {
	return d.browse.Handle(ctx, q)
}

// Search answers GET /v1/search.
func (d *Discovery) Search(ctx context.Context, q Search) (Answer, error) {
	return d.search.Handle(ctx, q)
}

// Trending answers GET /v1/trending.
func (d *Discovery) Trending(ctx context.Context, q Ranked) (Answer, error) {
	return d.trending.Handle(ctx, q)
}

// Popular answers GET /v1/popular.
func (d *Discovery) Popular(ctx context.Context, q Ranked) (Answer, error) {
	return d.popular.Handle(ctx, q)
}

// Categories answers GET /v1/categories.
func (d *Discovery) Categories(ctx context.Context, q Categories) (Answer, error) {
	return d.categories.Handle(ctx, q)
}

// RecordPlay answers POST /v1/plays, checking the program on the read model.
func (d *Discovery) RecordPlay(ctx context.Context, q RecordPlay) error {
	return d.PublishPlay(ctx, q, func(ctx context.Context, id string) error {
		_, err := d.ProgramByID(ctx, ProgramByID{ID: id})
		return err
	})
}

// PublishPlay validates q, checks its program with visible and publishes it (the
// cache passes its own cached check).
func (d *Discovery) PublishPlay(ctx context.Context, q RecordPlay, visible func(ctx context.Context, programID string) error) error {
	if d.plays == nil {
		return fmt.Errorf("record play: no publisher configured: %w", ErrUnavailable)
	}
	h, err := NewRecordPlayHandler(d.plays, visible, d.now)
	if err != nil {
		return err
	}
	return h.Handle(ctx, q)
}

// Answer returns res as an answer with the position to report now: the cache
// calls it for every hit.
func (d *Discovery) Answer(res *Response, consistent bool) Answer { return d.c.answer(res, consistent) }

// Positions is the position tracker behind X-Projection-Position; the cache feeds
// it the positions its invalidations carry.
func (d *Discovery) Positions() *Positions { return d.c.positions }

// Checkpoints returns the checkpoint reader the service was built with.
func (d *Discovery) Checkpoints() CheckpointReader { return d.checks }

// CurrentPosition returns the highest position known for the catalog projection:
// what X-Projection-Position reports on answers that read nothing (a 400).
func (d *Discovery) CurrentPosition() int64 { return d.c.positions.Get(ProjectionCatalog) }

// CDNBase returns the configured CDN base URL ("" when asset URLs are built from
// the request).
func (d *Discovery) CDNBase() string { return d.c.cdnBase }
