package projectiontest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
)

// Sinked is a projection as far as these helpers need it.
type Sinked interface {
	Sinks() []string
	Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error
}

// Checksums returns an md5 of every row of each sink, rows in a fixed order, so
// two databases hold equal sinks exactly when their checksums are equal.
func Checksums(t testing.TB, pool *pgxpool.Pool, sinks []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, table := range sinks {
		var sum string
		var n int
		q := fmt.Sprintf(`SELECT md5(COALESCE(string_agg(t::text, E'\n' ORDER BY t::text), '')), count(*) FROM %s t`,
			pgx.Identifier{table}.Sanitize())
		if err := pool.QueryRow(context.Background(), q).Scan(&sum, &n); err != nil {
			t.Fatalf("checksum %s: %v", table, err)
		}
		out[table] = fmt.Sprintf("%s (%d rows)", sum, n)
	}
	return out
}

// ApplyDirect feeds evs to p in random batch sizes (1..maxBatch), each batch in its
// own transaction, without a runtime: no checkpoint filters what the projection
// sees, so redeliveries reach it.
func ApplyDirect(t testing.TB, pool *pgxpool.Pool, p Sinked, evs []events.Envelope, seed uint64, maxBatch int) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 3))
	for len(evs) > 0 {
		n := min(len(evs), 1+rng.IntN(maxBatch))
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return p.Apply(ctx, tx, evs[:n]) })
		if err != nil {
			t.Fatalf("apply %d events from position %d: %v", n, evs[0].Position, err)
		}
		evs = evs[n:]
	}
}

// LoadPrograms reads a programs table (catalog or editorial shape) into Programs;
// EpisodeCount is read only when withCount is set.
func LoadPrograms(t testing.TB, pool *pgxpool.Pool, table string, withCount bool) map[string]Program {
	t.Helper()
	count := "0"
	if withCount {
		count = "episode_count"
	}
	rows, err := pool.Query(context.Background(), fmt.Sprintf(`SELECT id::text, title, description, category, language, tags,
		COALESCE(external_id, ''), status, published_at, created_at, updated_at, version, %s FROM %s`, count, pgx.Identifier{table}.Sanitize()))
	if err != nil {
		t.Fatalf("load %s: %v", table, err)
	}
	out := map[string]Program{}
	var p Program
	_, err = pgx.ForEachRow(rows, []any{&p.ID, &p.Title, &p.Description, &p.Category, &p.Language, &p.Tags, &p.ExternalID, &p.Status,
		&p.PublishedAt, &p.CreatedAt, &p.UpdatedAt, &p.Version, &p.EpisodeCount}, func() error {
		p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
		if p.PublishedAt != nil {
			u := p.PublishedAt.UTC()
			p.PublishedAt = &u
		}
		out[p.ID] = p
		p = Program{}
		return nil
	})
	if err != nil {
		t.Fatalf("load %s: %v", table, err)
	}
	return out
}

// LoadEpisodes reads catalog_episodes_v1 into Episodes.
func LoadEpisodes(t testing.TB, pool *pgxpool.Pool) map[string]Episode {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id::text, program_id::text, title, number, season, description,
		duration_seconds, COALESCE(external_id, ''), status, published_at, version FROM catalog_episodes_v1`)
	if err != nil {
		t.Fatalf("load episodes: %v", err)
	}
	out := map[string]Episode{}
	var e Episode
	_, err = pgx.ForEachRow(rows, []any{&e.ID, &e.ProgramID, &e.Title, &e.Number, &e.Season, &e.Description, &e.DurationSeconds,
		&e.ExternalID, &e.Status, &e.PublishedAt, &e.Version}, func() error {
		if e.PublishedAt != nil {
			u := e.PublishedAt.UTC()
			e.PublishedAt = &u
		}
		out[e.ID] = e
		e = Episode{}
		return nil
	})
	if err != nil {
		t.Fatalf("load episodes: %v", err)
	}
	return out
}

// LoadCategories reads catalog_categories_v1.
func LoadCategories(t testing.TB, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT slug, program_count FROM catalog_categories_v1`)
	if err != nil {
		t.Fatalf("load categories: %v", err)
	}
	out := map[string]int{}
	var slug string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&slug, &n}, func() error { out[slug] = n; return nil }); err != nil {
		t.Fatalf("load categories: %v", err)
	}
	return out
}

// Truncate empties sinks, so one database serves several cases in turn.
func Truncate(t testing.TB, pool *pgxpool.Pool, sinks []string) {
	t.Helper()
	ids := make([]string, len(sinks))
	for i, s := range sinks {
		ids[i] = pgx.Identifier{s}.Sanitize()
	}
	if _, err := pool.Exec(context.Background(), "TRUNCATE "+strings.Join(ids, ", ")); err != nil {
		t.Fatalf("truncate: %v", err)
	}
}
