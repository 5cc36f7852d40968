package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	searchpg "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/engagement"
	"github.com/mediamesh/mediamesh/projections/search"
	"github.com/mediamesh/mediamesh/query/app"
	"github.com/mediamesh/mediamesh/query/cache"
	"github.com/mediamesh/mediamesh/query/cache/redisstore"
)

// queryFixture is the generated catalog of the query suite. Everything about a
// program derives from its index and the seed, so the catalog and the request
// streams are the same in every run with the same seed.
type queryFixture struct {
	seed                        uint64
	programs, episodes          int
	vocab                       []string
	rank                        map[string]int
	categories, languages, tags []string
	mult                        int
	epoch                       time.Time
}

func newQueryFixture(seed uint64, programs, episodes int) *queryFixture {
	fx := &queryFixture{seed: seed, programs: programs, episodes: episodes, epoch: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rnd := rand.New(rand.NewPCG(seed, 7))
	seen := map[string]bool{}
	syllables := []string{"ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ber", "dan", "fel", "gor", "hal", "jin", "kor", "lin",
		"mor", "nor", "pel", "quin", "ros", "sil", "tor", "val", "wen", "yar", "zel", "dic", "noir", "sea", "sky", "ar", "el", "is"}
	for len(fx.vocab) < 20000 {
		var b strings.Builder
		for range 2 + rnd.IntN(3) {
			b.WriteString(syllables[rnd.IntN(len(syllables))])
		}
		if w := b.String(); !seen[w] {
			seen[w] = true
			fx.vocab = append(fx.vocab, w)
		}
	}
	fx.rank = make(map[string]int, len(fx.vocab))
	for i, w := range fx.vocab {
		fx.rank[w] = i
	}
	fx.categories = []string{"drama", "comedy", "documentary", "news", "sports", "kids", "music", "crime", "science", "history",
		"nature", "travel", "food", "talk", "reality", "anime", "horror", "romance", "thriller", "fantasy"}
	fx.languages = []string{"en", "fr", "de", "es", "it", "pt-BR", "ja", "nl"}
	for i := range 60 {
		fx.tags = append(fx.tags, fx.vocab[i*7]+"-"+fx.vocab[i*11+1])
	}
	for _, m := range []int{7919, 104729, 1299709, 15485863} {
		if gcd(m, programs) == 1 {
			fx.mult = m
			break
		}
	}
	return fx
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// popular maps a popularity rank to a program index (a fixed permutation, so the
// most requested programs are spread over the catalog).
func (fx *queryFixture) popular(rank int) int {
	return int((int64(rank)*int64(fx.mult) + 13) % int64(fx.programs))
}

func (fx *queryFixture) programID(i int) string {
	return fmt.Sprintf("019a0000-0000-7000-8000-%012x", i)
}
func (fx *queryFixture) episodeID(i int) string {
	return fmt.Sprintf("019a0001-0000-7000-8000-%012x", i)
}

// episodesOf is a program's number of episodes (the episodes spread evenly).
func (fx *queryFixture) episodesOf(p int) int {
	n := fx.episodes / fx.programs
	if p < fx.episodes%fx.programs {
		n++
	}
	return max(n, 1)
}

// firstEpisode is the index of a program's first episode.
func (fx *queryFixture) firstEpisode(p int) int {
	base := fx.episodes / fx.programs
	return p*base + min(p, fx.episodes%fx.programs)
}

func (fx *queryFixture) rng(kind, i int) *rand.Rand {
	return rand.New(rand.NewPCG(fx.seed, uint64(i)*8+uint64(kind)))
}

// words draws n words of the Zipf-distributed vocabulary.
func (fx *queryFixture) words(r *rand.Rand, lo, hi int) []string {
	z := rand.NewZipf(r, 1.05, 20, uint64(len(fx.vocab)-1))
	out := make([]string, lo+r.IntN(hi-lo+1))
	for i := range out {
		out[i] = fx.vocab[z.Uint64()]
	}
	return out
}

func (fx *queryFixture) titleWords(p int) []string { return fx.words(fx.rng(0, p), 2, 4) }

// rarest is the title word that comes last in the vocabulary (the least frequent,
// the one a user would type to find the program).
func (fx *queryFixture) rarest(words []string) string {
	best := words[0]
	for _, w := range words[1:] {
		if fx.rank[w] > fx.rank[best] {
			best = w
		}
	}
	return best
}

func (fx *queryFixture) program(p int) app.Program {
	r := fx.rng(1, p)
	title := strings.Join(fx.titleWords(p), " ")
	title = strings.ToUpper(title[:1]) + title[1:]
	pub := fx.epoch.Add(-time.Duration(p) * time.Minute)
	tags := []string{fx.tags[r.IntN(len(fx.tags))], fx.tags[r.IntN(len(fx.tags))]}
	if tags[0] == tags[1] {
		tags = tags[:1]
	}
	return app.Program{
		ID: fx.programID(p), Title: title, Description: strings.Join(fx.words(r, 10, 20), " ") + ".",
		Category: fx.categories[int(math.Min(float64(len(fx.categories)-1), r.ExpFloat64()*4))], Language: fx.languages[r.IntN(len(fx.languages))],
		Tags: tags, PublishedAt: &pub, EpisodeCount: fx.episodesOf(p), Version: int64(2 + 2*fx.episodesOf(p)),
	}
}

func (fx *queryFixture) episode(p, n int) app.Episode {
	r := fx.rng(2, fx.firstEpisode(p)+n)
	pub := fx.epoch.Add(-time.Duration(p)*time.Minute + time.Duration(n)*time.Second)
	season := 1 + n/8
	return app.Episode{ID: fx.episodeID(fx.firstEpisode(p) + n), ProgramID: fx.programID(p), Title: strings.Join(fx.words(r, 1, 3), " "),
		Number: n%8 + 1, Season: season, Description: strings.Join(fx.words(r, 5, 12), " ") + ".", DurationSeconds: 600 + r.IntN(3000), PublishedAt: &pub}
}

// queryPosition is the checkpoint the fixture's projections report.
const queryPosition = 1_000_000

// load writes the catalog into the read models (COPY), the search index, the
// engagement buckets and rankings, and Redis.
func (fx *queryFixture) load(ctx context.Context, pool *pgxpool.Pool, rc goredis.UniversalClient, keys cache.Keys, progress io.Writer) error {
	step := func(what string, start time.Time) {
		fmt.Fprintf(progress, "query: %s in %s\n", what, time.Since(start).Round(time.Millisecond))
	}
	start := time.Now()
	for _, stmt := range []string{
		`TRUNCATE catalog_programs_v1, catalog_episodes_v1, catalog_categories_v1, engagement_plays_v1, engagement_play_sessions_v1, engagement_rankings_v1`,
		`DELETE FROM projection_checkpoints WHERE name IN ('catalog', 'search')`,
		`INSERT INTO projection_checkpoints (name, version, position, serving) VALUES ('catalog', 1, ` + fmt.Sprint(queryPosition) + `, true), ('search', 1, ` + fmt.Sprint(queryPosition) + `, true)`,
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("bench query: reset: %w", err)
		}
	}
	counts := map[string]int{}
	p := 0
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"catalog_programs_v1"},
		[]string{"id", "title", "description", "category", "language", "tags", "status", "published_at", "created_at", "updated_at", "episode_count", "images", "version"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if p == fx.programs {
				return nil, nil
			}
			pr := fx.program(p)
			p++
			counts[pr.Category]++
			return []any{pr.ID, pr.Title, pr.Description, pr.Category, pr.Language, pr.Tags, "published", *pr.PublishedAt, *pr.PublishedAt,
				*pr.PublishedAt, pr.EpisodeCount, "{}", pr.Version}, nil
		})); err != nil {
		return fmt.Errorf("bench query: copy programs: %w", err)
	}
	step(fmt.Sprintf("copied %d programs", fx.programs), start)
	start = time.Now()
	p, n := 0, 0
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"catalog_episodes_v1"},
		[]string{"id", "program_id", "title", "number", "season", "description", "duration_seconds", "status", "published_at", "images", "version"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if p == fx.programs {
				return nil, nil
			}
			e := fx.episode(p, n)
			if n++; n == fx.episodesOf(p) {
				p, n = p+1, 0
			}
			return []any{e.ID, e.ProgramID, e.Title, e.Number, e.Season, e.Description, e.DurationSeconds, "published", *e.PublishedAt, "{}", int64(2)}, nil
		})); err != nil {
		return fmt.Errorf("bench query: copy episodes: %w", err)
	}
	for cat, c := range counts {
		if _, err := pool.Exec(ctx, `INSERT INTO catalog_categories_v1 (slug, program_count) VALUES ($1, $2)`, cat, c); err != nil {
			return fmt.Errorf("bench query: categories: %w", err)
		}
	}
	step(fmt.Sprintf("copied %d episodes", fx.episodes), start)

	start = time.Now()
	if err := fx.loadSearch(ctx, pool); err != nil {
		return err
	}
	step("indexed the programs for search", start)
	start = time.Now()
	if err := fx.loadEngagement(ctx, pool, rc, keys); err != nil {
		return err
	}
	step("counted plays and refreshed the rankings", start)
	start = time.Now()
	for _, t := range []string{"catalog_programs_v1", "catalog_episodes_v1", "search_" + search.IndexName(search.Version), "engagement_rankings_v1"} {
		if _, err := pool.Exec(ctx, "VACUUM ANALYZE "+pgx.Identifier{t}.Sanitize()); err != nil {
			return fmt.Errorf("bench query: vacuum %s: %w", t, err)
		}
	}
	step("vacuumed and analyzed", start)
	start = time.Now()
	if err := fx.loadRedis(ctx, rc, keys); err != nil {
		return err
	}
	step("wrote the Redis documents", start)
	return nil
}

// loadSearch fills the PostgreSQL search index through its adapter, on two
// connections.
func (fx *queryFixture) loadSearch(ctx context.Context, pool *pgxpool.Pool) error {
	idx, err := searchpg.New(pool)
	if err != nil {
		return err
	}
	index := search.IndexName(search.Version)
	if err := idx.DropIndex(ctx, index); err != nil {
		return fmt.Errorf("bench query: search index: %w", err)
	}
	if err := idx.EnsureIndex(ctx, index); err != nil {
		return fmt.Errorf("bench query: search index: %w", err)
	}
	const batch = 1000
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for w := range 2 {
		wg.Go(func() {
			for lo := w * batch; lo < fx.programs; lo += 2 * batch {
				docs := make([]search.Document, 0, batch)
				for p := lo; p < min(lo+batch, fx.programs); p++ {
					pr := fx.program(p)
					d := search.Document{ID: pr.ID, Title: pr.Title, Description: pr.Description, Category: pr.Category, Language: pr.Language,
						Tags: pr.Tags, EpisodeCount: pr.EpisodeCount, PublishedAt: *pr.PublishedAt, Version: pr.Version}
					for n := range fx.episodesOf(p) {
						d.EpisodeTitles = append(d.EpisodeTitles, fx.episode(p, n).Title)
					}
					docs = append(docs, d)
				}
				if err := idx.Upsert(ctx, index, docs); err != nil {
					mu.Lock()
					first = cmpErr(first, fmt.Errorf("bench query: index programs: %w", err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// loadEngagement writes play buckets for the most popular programs (more plays
// for higher ranks, spread over the last two days) and runs the real refresher,
// which ranks them into PostgreSQL and the Redis sorted sets.
func (fx *queryFixture) loadEngagement(ctx context.Context, pool *pgxpool.Pool, rc goredis.UniversalClient, keys cache.Keys) error {
	now := time.Now().UTC().Truncate(time.Hour)
	rank, hour := 0, 0
	const ranked, hours = 5000, 48
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"engagement_plays_v1"}, []string{"program_id", "hour", "plays"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if rank == min(ranked, fx.programs) {
				return nil, nil
			}
			plays := int64(1 + 100000/math.Pow(float64(rank+1), queryZipfS)/float64(1+hour%7))
			row := []any{fx.programID(fx.popular(rank)), now.Add(-time.Duration(hour) * time.Hour), plays}
			if hour++; hour == hours {
				rank, hour = rank+1, 0
			}
			return row, nil
		})); err != nil {
		return fmt.Errorf("bench query: copy plays: %w", err)
	}
	store, err := redisstore.New(rc)
	if err != nil {
		return err
	}
	ref, err := engagement.NewRefresher(pool, store, engagement.RefresherOptions{KeyPrefix: keys.Rankings})
	if err != nil {
		return err
	}
	for _, r := range []string{engagement.RankingTrending, engagement.RankingPopular} {
		if err := ref.Refresh(ctx, r); err != nil {
			return fmt.Errorf("bench query: %w", err)
		}
	}
	return nil
}

// loadRedis writes what the documents sink would: every program, episode list and
// episode document, the generations and the position.
func (fx *queryFixture) loadRedis(ctx context.Context, rc goredis.UniversalClient, keys cache.Keys) error {
	const workers, chunk = 4, 500
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for w := range workers {
		wg.Go(func() {
			for lo := w * chunk; lo < fx.programs; lo += workers * chunk {
				_, err := rc.Pipelined(ctx, func(pl goredis.Pipeliner) error {
					for p := lo; p < min(lo+chunk, fx.programs); p++ {
						doc, err := json.Marshal(fx.program(p))
						if err != nil {
							return err
						}
						eps := make([]app.Episode, fx.episodesOf(p))
						for n := range eps {
							eps[n] = fx.episode(p, n)
							b, err := json.Marshal(eps[n])
							if err != nil {
								return err
							}
							pl.Set(ctx, keys.Catalog+":episode:"+eps[n].ID, b, 0)
						}
						list, err := json.Marshal(eps)
						if err != nil {
							return err
						}
						pl.Set(ctx, keys.Catalog+":program:"+fx.programID(p)+":episodes", list, 0)
						pl.Set(ctx, keys.Catalog+":program:"+fx.programID(p), doc, 0)
					}
					return nil
				})
				if err != nil {
					mu.Lock()
					first = cmpErr(first, fmt.Errorf("bench query: write documents: %w", err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	_, err := rc.Pipelined(ctx, func(pl goredis.Pipeliner) error {
		pl.Set(ctx, keys.Catalog+":gen:browse", 1, 0)
		pl.Set(ctx, keys.Catalog+":gen:search", 1, 0)
		pl.Set(ctx, keys.Catalog+":position", queryPosition, 0)
		return nil
	})
	if err != nil {
		return fmt.Errorf("bench query: write position: %w", err)
	}
	return nil
}
