package replaybench_test

import (
	"context"
	"testing"

	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/opscli/replaybench"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// TestBenchReplaySmall runs the replay suite on a small history: the result is a
// valid bench document, and the rebuilt catalog holds exactly the generated
// programs and episodes, all published.
func TestBenchReplaySmall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewDB(t)
	const events = 5000 // 200 programs of 25 events
	results, err := replaybench.Run(ctx, pool, replaybench.Options{Events: events, BatchSize: 700})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Name != "replay" || results[0].Count != events || results[0].Baseline == nil ||
		results[0].Ratio == nil || len(results[0].Targets) != 1 {
		t.Fatalf("results: %+v", results)
	}
	doc := bench.NewDocument("replay")
	doc.Results = results
	if _, err := doc.Marshal(); err != nil {
		t.Fatalf("bench document: %v", err)
	}
	var programs, published, episodes, counted int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'published'), sum(episode_count)
		FROM catalog_programs_v2`).Scan(&programs, &published, &counted); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM catalog_episodes_v2 WHERE status = 'published'`).Scan(&episodes); err != nil {
		t.Fatal(err)
	}
	if programs != 200 || published != 200 || episodes != 2000 || counted != 2000 {
		t.Errorf("catalog v2: %d programs (%d published), %d published episodes, episode_count sum %d", programs, published, episodes, counted)
	}
	var serving int
	if err := pool.QueryRow(ctx, `SELECT version FROM projection_checkpoints WHERE name = 'catalog' AND serving`).Scan(&serving); err != nil || serving != 2 {
		t.Errorf("serving version %d, %v", serving, err)
	}
}
