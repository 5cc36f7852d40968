package readmodel

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/query/app"
)

// Rankings implements app.RankingReadModel on the engagement projection's
// rankings table (engagement_rankings_v1): the PostgreSQL fallback of the Redis
// sorted sets, written by the same refresh. Ties are in the sorted sets' order
// (score, then program id, both descending).
type Rankings struct {
	r *Router
}

// NewRankings returns the adapter.
func NewRankings(r *Router) (*Rankings, error) {
	if r == nil {
		return nil, errors.New("rankings read model: nil router")
	}
	return &Rankings{r: r}, nil
}

// Ranked implements app.RankingReadModel.
func (k *Rankings) Ranked(ctx context.Context, ranking, category string, offset, limit int) ([]string, int, error) {
	type result struct {
		ids   []string
		total int
	}
	res, _, err := routed(ctx, k.r, func(ctx context.Context, db *pgxpool.Pool) (result, app.Snapshot, error) {
		rows, err := db.Query(ctx, `SELECT program_id::text, count(*) OVER () FROM engagement_rankings_v1
			WHERE ranking = $1 AND category = $2 ORDER BY rank LIMIT $3 OFFSET $4`, ranking, category, limit, min(offset, maxOffset))
		if err != nil {
			return result{}, app.Snapshot{}, fmt.Errorf("read %s ranking: %w", ranking, err)
		}
		defer rows.Close()
		var out result
		out.ids = []string{}
		for rows.Next() {
			var id string
			var total int
			if err := rows.Scan(&id, &total); err != nil {
				return result{}, app.Snapshot{}, fmt.Errorf("read %s ranking: %w", ranking, err)
			}
			out.ids, out.total = append(out.ids, id), total
		}
		if err := rows.Err(); err != nil {
			return result{}, app.Snapshot{}, fmt.Errorf("read %s ranking: %w", ranking, err)
		}
		if len(out.ids) == 0 && offset > 0 {
			if err := db.QueryRow(ctx, `SELECT count(*) FROM engagement_rankings_v1 WHERE ranking = $1 AND category = $2`,
				ranking, category).Scan(&out.total); err != nil {
				return result{}, app.Snapshot{}, fmt.Errorf("count %s ranking: %w", ranking, err)
			}
		}
		return out, app.Snapshot{Includes: true}, nil
	})
	return res.ids, res.total, err
}
