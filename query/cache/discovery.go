// Package cache is the discovery API's cache layers: a bounded in-process cache of
// rendered answers (otter) in front of Redis (the catalog documents the documents
// sink writes, list results this package writes, the engagement sorted sets) in
// front of the PostgreSQL read models.
//
// Decisions:
//   - The in-process cache holds rendered answers (body, ETag, compressed variants
//     made once), so a hit costs a map lookup and a few header writes. Each kind
//     has its TTL (Options.TTLs: program 30 min, episodes 20 min, search 5 min,
//     trending 10 min, popular 15 min, browse lists 5 min, categories 10 min).
//   - Invalidation: the documents sink publishes {"programs","episodes","position"}
//     on mm:catalog:v1:invalidate after every flush. By-id entries are keyed with a
//     per-id stamp; invalidating an id drops its stamp, so every entry of that id
//     (any page, any base URL) becomes unreachable at once, including one a load
//     still in flight stores later. Lists are keyed with local epochs, bumped when
//     mm:catalog:v1:gen:browse or :gen:search moved (read after each message).
//   - An entry keeps its full TTL only when no invalidation can have been missed:
//     the subscription was up from before its load until its store, and, for an
//     answer read from PostgreSQL or the search index, the position it was read at
//     is not behind the position the documents sink last announced (else a change
//     announced before the read finished could be missing from it). Otherwise the
//     entry lives Options.ShortTTL (5 s). When the subscription drops or comes back
//     every entry is dropped: messages may have been missed. With Redis off there is
//     no invalidation at all, and every entry lives ShortTTL.
//   - One load per key (singleflight on the entry's key); the load runs on a context
//     detached from the first caller's, bounded by Options.LoadTimeout, so one
//     client going away does not fail the others.
//   - Reads with a consistency token bypass the caches, except a by-id entry whose
//     catalog version proves it includes the token's write.
//   - 404s are cached like answers (their invalidation is the same message).
package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"golang.org/x/sync/singleflight"

	"github.com/mediamesh/mediamesh/query/app"
)

// TTLs are the server-side lifetimes of in-process (and Redis list) entries.
type TTLs struct {
	Program, Episodes, Search, Trending, Popular, Browse, Categories time.Duration
}

// DefaultTTLs are the sizing guide's.
var DefaultTTLs = TTLs{
	Program:    30 * time.Minute,
	Episodes:   20 * time.Minute,
	Search:     5 * time.Minute,
	Trending:   10 * time.Minute,
	Popular:    15 * time.Minute,
	Browse:     5 * time.Minute,
	Categories: 10 * time.Minute,
}

// Options tune the cache; zero values take the defaults.
type Options struct {
	TTLs TTLs
	// ShortTTL is the lifetime of an entry that might have missed an invalidation
	// (5 s).
	ShortTTL time.Duration
	// MaxBytes bounds the in-process cache by the size of its bodies (256 MiB).
	MaxBytes uint64
	// Remote is Redis behind its breaker (nil: Redis off).
	Remote Remote
	// Keys name the Redis keys (DefaultKeys).
	Keys Keys
	// Metrics counts lookups per layer (none).
	Metrics Metrics
	// LoadTimeout bounds one shared load (5 s).
	LoadTimeout time.Duration
	// PositionsEvery is how often Run reads the projections' checkpoints for
	// X-Projection-Position (1 s).
	PositionsEvery time.Duration
	// Logger receives invalidation problems (slog.Default()).
	Logger *slog.Logger
}

// Discovery is the cached discovery service: the methods of app.Discovery, with
// the in-process and Redis list layers in front of it. Run must be running for
// invalidations to arrive.
type Discovery struct {
	inner   *app.Discovery
	opts    Options
	remote  Remote
	keys    Keys
	metrics Metrics
	log     *slog.Logger
	cdn     bool

	entries *otter.Cache[string, *entry]
	stamps  *otter.Cache[string, uint64]
	stamp   atomic.Uint64
	sf      singleflight.Group

	// Invalidation state.
	healthy     atomic.Bool   // the subscription is active
	subEpoch    atomic.Uint64 // moves on every subscribe and every loss
	docsPos     atomic.Int64  // the highest position the documents sink announced
	epochBrowse atomic.Uint64
	epochSearch atomic.Uint64
	genMu       sync.Mutex
	genBrowse   int64 // Redis generations as last read (-1: unknown)
	genSearch   int64
	gensOK      atomic.Bool // genBrowse/genSearch reflect the last message

	stats struct{ requests, memory, redis, postgres atomic.Int64 }
}

// entry is one cached answer or 404.
type entry struct {
	res     *app.Response
	missing *app.MissingError
	// version is the catalog row version of a by-id answer (0 when unknown).
	version int64
	ttl     time.Duration
}

// New returns the cache in front of inner.
func New(inner *app.Discovery, opts Options) (*Discovery, error) {
	if inner == nil {
		return nil, errors.New("discovery cache: nil service")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.TTLs.Program, DefaultTTLs.Program)
	def(&opts.TTLs.Episodes, DefaultTTLs.Episodes)
	def(&opts.TTLs.Search, DefaultTTLs.Search)
	def(&opts.TTLs.Trending, DefaultTTLs.Trending)
	def(&opts.TTLs.Popular, DefaultTTLs.Popular)
	def(&opts.TTLs.Browse, DefaultTTLs.Browse)
	def(&opts.TTLs.Categories, DefaultTTLs.Categories)
	def(&opts.ShortTTL, 5*time.Second)
	def(&opts.LoadTimeout, 5*time.Second)
	def(&opts.PositionsEvery, time.Second)
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 256 << 20
	}
	if opts.Keys.Catalog == "" {
		opts.Keys = DefaultKeys
	}
	if opts.Metrics == nil {
		opts.Metrics = noMetrics{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	entries, err := otter.New(&otter.Options[string, *entry]{
		MaximumWeight: opts.MaxBytes,
		Weigher: func(k string, e *entry) uint32 {
			n := len(k) + 160
			if e.res != nil {
				n += len(e.res.Body)
			}
			return uint32(n)
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *entry]) time.Duration { return e.Value.ttl }),
	})
	if err != nil {
		return nil, fmt.Errorf("discovery cache: %w", err)
	}
	stamps, err := otter.New(&otter.Options[string, uint64]{MaximumSize: 1 << 20})
	if err != nil {
		return nil, fmt.Errorf("discovery cache: %w", err)
	}
	d := &Discovery{
		inner: inner, opts: opts, remote: opts.Remote, keys: opts.Keys, metrics: opts.Metrics, log: opts.Logger,
		cdn: inner.CDNBase() != "", entries: entries, stamps: stamps, genBrowse: -1, genSearch: -1,
	}
	return d, nil
}

// Stats counts how requests were answered: from the in-process cache, from Redis
// (documents or a stored list), or computed from PostgreSQL (or the search index).
type Stats struct {
	Requests, Memory, Redis, Postgres int64
}

// HitRate is the share of requests answered without PostgreSQL.
func (s Stats) HitRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Memory+s.Redis) / float64(s.Requests)
}

// Stats returns the counts since the start or the last ResetStats.
func (d *Discovery) Stats() Stats {
	return Stats{Requests: d.stats.requests.Load(), Memory: d.stats.memory.Load(), Redis: d.stats.redis.Load(), Postgres: d.stats.postgres.Load()}
}

// ResetStats sets the counts to zero.
func (d *Discovery) ResetStats() {
	d.stats.requests.Store(0)
	d.stats.memory.Store(0)
	d.stats.redis.Store(0)
	d.stats.postgres.Store(0)
}

// stampOf returns the current stamp of an id, making one if it has none.
func (d *Discovery) stampOf(id string) string {
	if s, ok := d.stamps.GetIfPresent(id); ok {
		return strconv.FormatUint(s, 36)
	}
	s, _ := d.stamps.SetIfAbsent(id, d.stamp.Add(1))
	return strconv.FormatUint(s, 36)
}

// baseKey is the part of a key that depends on the request's base URL: nothing
// when a CDN base is configured (every answer is the same for every host).
func (d *Discovery) baseKey(base string) string {
	if d.cdn {
		return ""
	}
	return base
}

// loadState is the invalidation state at the start of a load.
type loadState struct {
	healthy bool
	epoch   uint64
}

func (d *Discovery) state() loadState {
	// Epoch first: a change of health after it is seen as an epoch change.
	e := d.subEpoch.Load()
	return loadState{healthy: d.healthy.Load(), epoch: e}
}

// ttlFor decides an entry's lifetime (see the package documentation).
func (d *Discovery) ttlFor(full time.Duration, snap app.Snapshot, st loadState) time.Duration {
	if !st.healthy || d.subEpoch.Load() != st.epoch || !d.healthy.Load() {
		return d.opts.ShortTTL
	}
	if snap.Source != app.SourceRedis && snap.Source != app.SourceMemory && snap.Position < d.docsPos.Load() {
		return d.opts.ShortTTL
	}
	return full
}

// serve answers from the in-process cache, or runs load once per key (whoever
// asks meanwhile waits for that load) and stores its result: an answer or a 404.
func (d *Discovery) serve(ctx context.Context, key string, full time.Duration, load func(ctx context.Context) (app.Answer, error)) (app.Answer, error) {
	d.stats.requests.Add(1)
	if e, ok := d.entries.GetIfPresent(key); ok {
		d.metrics.CacheRequest(LayerMemory, ResultHit)
		d.stats.memory.Add(1)
		return d.answerOf(e)
	}
	d.metrics.CacheRequest(LayerMemory, ResultMiss)
	v, err, _ := d.sf.Do(key, func() (any, error) {
		st := d.state()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.opts.LoadTimeout)
		defer cancel()
		a, err := load(lctx)
		var missing *app.MissingError
		switch {
		case err == nil:
			e := &entry{res: a.Response, version: a.Response.Version}
			e.ttl = d.ttlFor(full, a.Response.Snapshot, st)
			d.entries.Set(key, e)
			return e, nil
		case errors.As(err, &missing):
			e := &entry{missing: missing, version: missing.Version}
			e.ttl = d.ttlFor(full, missing.Snapshot, st)
			d.entries.Set(key, e)
			return e, nil
		}
		return nil, err
	})
	if err != nil {
		return app.Answer{}, err
	}
	e := v.(*entry)
	var src app.Source
	if e.res != nil {
		src = e.res.Snapshot.Source
	} else {
		src = e.missing.Snapshot.Source
	}
	if src == app.SourceRedis {
		d.stats.redis.Add(1)
	} else {
		d.stats.postgres.Add(1)
	}
	return d.answerOf(e)
}

func (d *Discovery) answerOf(e *entry) (app.Answer, error) {
	if e.missing != nil {
		return app.Answer{}, e.missing
	}
	return d.inner.Answer(e.res, false), nil
}

// ProgramByID answers GET /v1/programs/{id}. Most programs render the same for
// every base URL and are kept once; one with relative asset URLs is kept per base.
func (d *Discovery) ProgramByID(ctx context.Context, q app.ProgramByID) (app.Answer, error) {
	stamp := d.stampOf(q.ID)
	shared := "p|" + q.ID + "|" + stamp
	if q.After != nil {
		return d.proven(ctx, q.After, q.ID, []string{shared, shared + "|" + d.baseKey(q.Base)}, func(ctx context.Context) (app.Answer, error) {
			return d.inner.ProgramByID(ctx, q)
		})
	}
	if e, ok := d.entries.GetIfPresent(shared); ok && (e.res == nil || !e.res.BaseDependent) {
		d.stats.requests.Add(1)
		d.stats.memory.Add(1)
		d.metrics.CacheRequest(LayerMemory, ResultHit)
		return d.answerOf(e)
	}
	perBase := shared + "|" + d.baseKey(q.Base)
	a, err := d.serve(ctx, perBase, d.opts.TTLs.Program, func(ctx context.Context) (app.Answer, error) {
		return d.inner.ProgramByID(ctx, q)
	})
	// Keep base-independent answers (and 404s) under the shared key too.
	if e, ok := d.entries.GetIfPresent(perBase); ok && (e.res == nil || !e.res.BaseDependent) {
		d.entries.SetIfAbsent(shared, e)
	}
	return a, err
}

// proven answers a read with a consistency token: from a cached by-id entry when
// its catalog version proves it includes the write on that same program,
// otherwise from the service (which waits as long as needed) without caching.
func (d *Discovery) proven(ctx context.Context, after *app.WritePoint, id string, keys []string, load func(ctx context.Context) (app.Answer, error)) (app.Answer, error) {
	if after.ProgramID() == id {
		for _, k := range keys {
			if e, ok := d.entries.GetIfPresent(k); ok && e.version >= after.Version && e.version > 0 {
				if e.res != nil && e.res.BaseDependent && k == keys[0] {
					continue
				}
				d.metrics.CacheRequest(LayerMemory, ResultHit)
				if e.missing != nil {
					return app.Answer{}, e.missing
				}
				return d.inner.Answer(e.res, true), nil
			}
		}
	}
	d.metrics.CacheRequest(LayerMemory, ResultMiss)
	return load(ctx)
}

// ProgramEpisodes answers GET /v1/programs/{id}/episodes.
func (d *Discovery) ProgramEpisodes(ctx context.Context, q app.ProgramEpisodes) (app.Answer, error) {
	if q.After != nil {
		d.metrics.CacheRequest(LayerMemory, ResultMiss)
		return d.inner.ProgramEpisodes(ctx, q)
	}
	key := "e|" + q.ProgramID + "|" + d.stampOf(q.ProgramID) + "|" + strconv.Itoa(q.Season) + "|" + strconv.Itoa(q.Page) + "|" +
		strconv.Itoa(q.Limit) + "|" + d.baseKey(q.Base)
	return d.serve(ctx, key, d.opts.TTLs.Episodes, func(ctx context.Context) (app.Answer, error) {
		return d.inner.ProgramEpisodes(ctx, q)
	})
}

// EpisodeByID answers GET /v1/episodes/{id}. An episode's entry is invalidated by
// its own id: the documents sink names every episode whose document changed,
// including all of a program's episodes when the program's visibility changes.
func (d *Discovery) EpisodeByID(ctx context.Context, q app.EpisodeByID) (app.Answer, error) {
	if q.After != nil {
		d.metrics.CacheRequest(LayerMemory, ResultMiss)
		return d.inner.EpisodeByID(ctx, q)
	}
	key := "E|" + q.ID + "|" + d.stampOf(q.ID) + "|" + d.baseKey(q.Base)
	return d.serve(ctx, key, d.opts.TTLs.Episodes, func(ctx context.Context) (app.Answer, error) {
		return d.inner.EpisodeByID(ctx, q)
	})
}

// listKind is a kind of list answer: its key tag, the generation it is keyed on,
// its lifetime, and whether it is stored in Redis too.
type listKind struct {
	tag    string
	search bool // keyed on the search generation, not the browse one
	ttl    func(TTLs) time.Duration
	redis  bool // stored in Redis too
}

var (
	kindBrowse     = listKind{tag: "b", ttl: func(t TTLs) time.Duration { return t.Browse }, redis: true}
	kindSearch     = listKind{tag: "s", search: true, ttl: func(t TTLs) time.Duration { return t.Search }, redis: true}
	kindTrending   = listKind{tag: "t", ttl: func(t TTLs) time.Duration { return t.Trending }}
	kindPopular    = listKind{tag: "P", ttl: func(t TTLs) time.Duration { return t.Popular }}
	kindCategories = listKind{tag: "c", ttl: func(t TTLs) time.Duration { return t.Categories }}
)

// list answers a list query: in-process, then the Redis list store (for kinds
// that use it), then the service.
func (d *Discovery) list(ctx context.Context, k listKind, params string, base string, load func(ctx context.Context) (app.Answer, error)) (app.Answer, error) {
	epoch := d.epochBrowse.Load()
	if k.search {
		epoch = d.epochSearch.Load()
	}
	key := k.tag + "|" + strconv.FormatUint(epoch, 36) + "|" + params + "|" + d.baseKey(base)
	full := k.ttl(d.opts.TTLs)
	return d.serve(ctx, key, full, func(ctx context.Context) (app.Answer, error) {
		rkey, ok := d.listKey(k, params, base)
		if ok && k.redis {
			if res, ok := d.getList(ctx, rkey); ok {
				return d.inner.Answer(res, false), nil
			}
		}
		st := d.state()
		a, err := load(ctx)
		if err == nil && ok && k.redis && d.ttlFor(full, a.Response.Snapshot, st) == full {
			d.putList(ctx, rkey, a.Response, full)
		}
		return a, err
	})
}

// listKey is the Redis key of a list answer under the current generation; false
// while the generation is unknown or may be older than the last message.
func (d *Discovery) listKey(k listKind, params, base string) (string, bool) {
	if d.remote == nil || !d.gensOK.Load() {
		return "", false
	}
	d.genMu.Lock()
	gen := d.genBrowse
	if k.search {
		gen = d.genSearch
	}
	d.genMu.Unlock()
	if gen < 0 {
		return "", false
	}
	return d.keys.Lists + k.tag + ":" + strconv.FormatInt(gen, 10) + ":" + params + "|" + d.baseKey(base), true
}

// storedList is a list answer in Redis.
type storedList struct {
	Position int64           `json:"p"`
	Body     json.RawMessage `json:"b"`
}

func (d *Discovery) getList(ctx context.Context, key string) (*app.Response, bool) {
	vals, err := d.remote.MGet(ctx, key)
	switch {
	case err != nil:
		d.metrics.CacheRequest(LayerRedis, ResultError)
		return nil, false
	case vals[0] == nil:
		d.metrics.CacheRequest(LayerRedis, ResultMiss)
		return nil, false
	}
	var s storedList
	if json.Unmarshal(vals[0], &s) != nil || len(s.Body) == 0 {
		d.metrics.CacheRequest(LayerRedis, ResultMiss)
		return nil, false
	}
	d.metrics.CacheRequest(LayerRedis, ResultHit)
	return app.NewResponse(s.Body, app.Snapshot{Source: app.SourceRedis, Position: s.Position, Includes: true}), true
}

func (d *Discovery) putList(ctx context.Context, key string, res *app.Response, ttl time.Duration) {
	b, err := json.Marshal(storedList{Position: res.Snapshot.Position, Body: res.Body})
	if err != nil {
		return
	}
	if err := d.remote.Set(ctx, key, b, ttl); err != nil {
		d.metrics.CacheRequest(LayerRedis, ResultError)
	}
}

// BrowsePrograms answers GET /v1/programs.
func (d *Discovery) BrowsePrograms(ctx context.Context, q app.BrowsePrograms) (app.Answer, error) {
	f, page, err := q.Normalize()
	if err != nil {
		return app.Answer{}, err
	}
	if q.After != nil {
		d.metrics.CacheRequest(LayerMemory, ResultMiss)
		return d.inner.BrowsePrograms(ctx, q)
	}
	params := strings.Join([]string{f.Category, f.Language, f.Tag, f.Sort, strconv.Itoa(page), strconv.Itoa(f.Limit)}, "|")
	return d.list(ctx, kindBrowse, params, q.Base, func(ctx context.Context) (app.Answer, error) {
		return d.inner.BrowsePrograms(ctx, q)
	})
}

// Search answers GET /v1/search.
func (d *Discovery) Search(ctx context.Context, q app.Search) (app.Answer, error) {
	sq, err := q.Normalize()
	if err != nil {
		return app.Answer{}, err
	}
	if q.After != nil {
		d.metrics.CacheRequest(LayerMemory, ResultMiss)
		return d.inner.Search(ctx, q)
	}
	params := strings.Join([]string{strconv.Quote(sq.Text), sq.Category, sq.Language, strconv.Itoa(sq.Page), strconv.Itoa(sq.Limit)}, "|")
	return d.list(ctx, kindSearch, params, q.Base, func(ctx context.Context) (app.Answer, error) {
		return d.inner.Search(ctx, q)
	})
}

// Trending answers GET /v1/trending.
func (d *Discovery) Trending(ctx context.Context, q app.Ranked) (app.Answer, error) {
	return d.ranked(ctx, kindTrending, q, d.inner.Trending)
}

// Popular answers GET /v1/popular.
func (d *Discovery) Popular(ctx context.Context, q app.Ranked) (app.Answer, error) {
	return d.ranked(ctx, kindPopular, q, d.inner.Popular)
}

func (d *Discovery) ranked(ctx context.Context, k listKind, q app.Ranked, load func(context.Context, app.Ranked) (app.Answer, error)) (app.Answer, error) {
	category, page, limit, err := q.Normalize()
	if err != nil {
		return app.Answer{}, err
	}
	if q.After != nil {
		d.metrics.CacheRequest(LayerMemory, ResultMiss)
		return load(ctx, q)
	}
	params := category + "|" + strconv.Itoa(page) + "|" + strconv.Itoa(limit)
	return d.list(ctx, k, params, q.Base, func(ctx context.Context) (app.Answer, error) { return load(ctx, q) })
}

// Categories answers GET /v1/categories.
func (d *Discovery) Categories(ctx context.Context, q app.Categories) (app.Answer, error) {
	if q.After != nil {
		d.metrics.CacheRequest(LayerMemory, ResultMiss)
		return d.inner.Categories(ctx, q)
	}
	return d.list(ctx, kindCategories, "", "", func(ctx context.Context) (app.Answer, error) {
		return d.inner.Categories(ctx, q)
	})
}

// CurrentPosition returns the catalog's highest known position (for answers that
// read nothing).
func (d *Discovery) CurrentPosition() int64 { return d.inner.CurrentPosition() }

// RecordPlay answers POST /v1/plays, checking the program through the cache.
func (d *Discovery) RecordPlay(ctx context.Context, q app.RecordPlay) error {
	return d.inner.PublishPlay(ctx, q, func(ctx context.Context, id string) error {
		_, err := d.ProgramByID(ctx, app.ProgramByID{ID: id})
		return err
	})
}
