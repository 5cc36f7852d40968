package cache

import (
	"context"
	"errors"

	"github.com/mediamesh/mediamesh/query/app"
)

// Rankings serves trending and popular from the Redis sorted sets the engagement
// refresher writes (RankingKey), falling back to the PostgreSQL ranking table it
// writes in the same refresh. An empty or missing set also falls back: Redis may
// have lost it, and an empty ranking costs PostgreSQL next to nothing.
type Rankings struct {
	remote  Remote
	prefix  string
	pg      app.RankingReadModel
	metrics Metrics
}

// NewRankings returns the layer; remote may be nil (Redis off).
func NewRankings(remote Remote, keys Keys, pg app.RankingReadModel, metrics Metrics) (*Rankings, error) {
	if pg == nil {
		return nil, errors.New("rankings layer: nil fallback")
	}
	if keys.Rankings == "" {
		keys = DefaultKeys
	}
	if metrics == nil {
		metrics = noMetrics{}
	}
	return &Rankings{remote: remote, prefix: keys.Rankings, pg: pg, metrics: metrics}, nil
}

// Ranked implements app.RankingReadModel.
func (r *Rankings) Ranked(ctx context.Context, ranking, category string, offset, limit int) ([]string, int, error) {
	if r.remote != nil {
		ids, total, err := r.remote.RevRange(ctx, RankingKey(r.prefix, ranking, category), offset, limit)
		switch {
		case err != nil:
			r.metrics.CacheRequest(LayerRedis, ResultError)
		case total > 0:
			r.metrics.CacheRequest(LayerRedis, ResultHit)
			return ids, total, nil
		default:
			r.metrics.CacheRequest(LayerRedis, ResultMiss)
		}
	}
	ids, total, err := r.pg.Ranked(ctx, ranking, category, offset, limit)
	if err != nil {
		r.metrics.CacheRequest(LayerPostgres, ResultError)
	} else {
		r.metrics.CacheRequest(LayerPostgres, ResultHit)
	}
	return ids, total, err
}
