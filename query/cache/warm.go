package cache

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/mediamesh/mediamesh/query/app"
)

// DefaultWarmPrograms is how many programs Warm loads at start-up.
const DefaultWarmPrograms = 1000

// Warm loads the n most popular programs (topped up with the most recently
// published ones when fewer have plays) into the in-process cache, so a fresh
// instance does not send its first burst of traffic to Redis and PostgreSQL. It
// returns how many programs it loaded. Programs whose answer depends on the
// request's host (relative asset URLs without a CDN base) cannot be warmed.
func (d *Discovery) Warm(ctx context.Context, n int) (int, error) {
	if n <= 0 {
		n = DefaultWarmPrograms
	}
	ids := make([]string, 0, n)
	seen := map[string]bool{}
	add := func(list []string) {
		for _, id := range list {
			if len(ids) < n && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	for page := 1; len(ids) < n; page++ {
		a, err := d.inner.Popular(ctx, app.Ranked{Page: page, Limit: app.MaxLimit})
		got := idsOf(a, err)
		add(got)
		if len(got) < app.MaxLimit {
			break
		}
	}
	for page := 1; len(ids) < n; page++ {
		a, err := d.inner.BrowsePrograms(ctx, app.BrowsePrograms{Sort: app.SortRecent, Page: page, Limit: app.MaxLimit})
		if err != nil {
			return 0, err
		}
		got := idsOf(a, nil)
		add(got)
		if len(got) < app.MaxLimit {
			break
		}
	}
	return d.WarmIDs(ctx, ids)
}

// WarmIDs loads the given programs into the in-process cache, eight at a time, and
// returns how many it loaded (programs that are not visible are skipped).
func (d *Discovery) WarmIDs(ctx context.Context, ids []string) (int, error) {
	var (
		loaded atomic.Int64
		wg     sync.WaitGroup
		next   atomic.Int64
		errMu  sync.Mutex
		first  error
	)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) || ctx.Err() != nil {
					return
				}
				_, err := d.ProgramByID(ctx, app.ProgramByID{ID: ids[i]})
				switch {
				case err == nil:
					loaded.Add(1)
				case !errors.Is(err, app.ErrNotFound):
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return int(loaded.Load()), ctx.Err()
	}
	return int(loaded.Load()), first
}

// idsOf reads the program ids of a rendered list.
func idsOf(a app.Answer, err error) []string {
	if err != nil || a.Response == nil {
		return nil
	}
	var list struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if json.Unmarshal(a.Body, &list) != nil {
		return nil
	}
	out := make([]string, len(list.Items))
	for i, it := range list.Items {
		out[i] = it.ID
	}
	return out
}
