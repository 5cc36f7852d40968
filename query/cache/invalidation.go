package cache

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/mediamesh/mediamesh/query/app"
)

// notice is the documents sink's invalidation message.
type notice struct {
	Programs []string `json:"programs"`
	Episodes []string `json:"episodes"`
	Position int64    `json:"position"`
}

// Run keeps the cache's invalidations flowing until ctx ends, then returns nil:
// the Redis subscription (resubscribing with backoff after a failure) and, every
// Options.PositionsEvery, the projections' checkpoints behind
// X-Projection-Position. Without Redis it only refreshes the positions.
func (d *Discovery) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { d.refreshPositions(ctx) })
	if d.remote != nil {
		wg.Go(func() { d.subscribe(ctx) })
	}
	wg.Wait()
	return nil
}

func (d *Discovery) refreshPositions(ctx context.Context) {
	checks := d.inner.Checkpoints()
	t := time.NewTicker(d.opts.PositionsEvery)
	defer t.Stop()
	for {
		if m, err := checks.Checkpoints(ctx); err == nil {
			for name, pos := range m {
				d.inner.Positions().Observe(name, pos)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Discovery) subscribe(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		connected := false
		err := d.remote.Subscribe(ctx, d.keys.invalidate(), func() {
			connected = true
			d.connected(ctx)
		}, func(payload []byte) {
			d.handle(ctx, payload)
		})
		if connected {
			attempt = 0
			d.lost()
		}
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("cache invalidation subscription failed; caches use their short TTL until it is back", "error", errString(err))
		if !sleepBackoff(ctx, attempt) {
			return
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "subscription ended"
	}
	return err.Error()
}

// connected runs once the subscription is active: messages may have been missed
// before it, so every entry is dropped, and the generations and the documents
// position are read afresh.
func (d *Discovery) connected(ctx context.Context) {
	d.subEpoch.Add(1)
	d.dropAll()
	d.readGenerations(ctx, true)
	d.healthy.Store(true)
	d.subEpoch.Add(1)
}

// lost runs when the subscription ends: until it is back, invalidations cannot
// arrive, so every entry is dropped and new ones get the short TTL.
func (d *Discovery) lost() {
	d.healthy.Store(false)
	d.subEpoch.Add(1)
	d.dropAll()
	d.gensOK.Store(false)
}

func (d *Discovery) dropAll() {
	d.stamps.InvalidateAll()
	d.epochBrowse.Add(1)
	d.epochSearch.Add(1)
	d.entries.InvalidateAll()
}

// handle applies one invalidation message.
func (d *Discovery) handle(ctx context.Context, payload []byte) {
	var n notice
	if err := json.Unmarshal(payload, &n); err != nil {
		d.log.Warn("undecodable invalidation message; dropping every entry", "error", err.Error())
		d.dropAll()
		return
	}
	d.gensOK.Store(false)
	for _, id := range n.Programs {
		d.stamps.Invalidate(id)
	}
	for _, id := range n.Episodes {
		d.stamps.Invalidate(id)
	}
	d.observeDocs(n.Position)
	d.readGenerations(ctx, false)
}

func (d *Discovery) observeDocs(pos int64) {
	for {
		cur := d.docsPos.Load()
		if pos <= cur || d.docsPos.CompareAndSwap(cur, pos) {
			break
		}
	}
	d.inner.Positions().Observe(app.ProjectionDocuments, pos)
}

// readGenerations reads the generation counters (and the documents position) and
// bumps the local list epochs of those that moved; when they cannot be read, both
// epochs move (a list may have changed).
func (d *Discovery) readGenerations(ctx context.Context, fresh bool) {
	vals, err := d.remote.MGet(ctx, d.keys.genBrowse(), d.keys.genSearch(), d.keys.position())
	if err != nil {
		d.epochBrowse.Add(1)
		d.epochSearch.Add(1)
		return
	}
	parse := func(b []byte) int64 {
		if b == nil {
			return 0
		}
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	browse, search := parse(vals[0]), parse(vals[1])
	if pos := parse(vals[2]); pos > 0 {
		d.observeDocs(pos)
	}
	d.genMu.Lock()
	if fresh || browse != d.genBrowse || browse < 0 {
		d.epochBrowse.Add(1)
	}
	if fresh || search != d.genSearch || search < 0 {
		d.epochSearch.Add(1)
	}
	d.genBrowse, d.genSearch = browse, search
	d.genMu.Unlock()
	d.gensOK.Store(browse >= 0 && search >= 0)
}

// sleepBackoff waits 50 ms·2^attempt (at most 5 s, with jitter); false if ctx ended.
func sleepBackoff(ctx context.Context, attempt int) bool {
	d := 50 * time.Millisecond << min(attempt, 10)
	if d > 5*time.Second {
		d = 5 * time.Second
	}
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Healthy reports whether invalidations are flowing (the subscription is up).
func (d *Discovery) Healthy() bool { return d.healthy.Load() }
