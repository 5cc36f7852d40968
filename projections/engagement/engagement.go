// Package engagement turns plays into trending and popular rankings.
//
// POST /v1/plays publishes one message per play on the bus topic Topic (plays are
// telemetry: they never enter the event store). The Counter consumes the topic and
// counts each play into an hourly bucket per program in PostgreSQL, at most once
// per session, program and hour. The Refresher periodically ranks programs from
// the buckets (trending: a decaying recent window, every 5 minutes; popular: the
// last 30 days, every 10 minutes; overall and per category) into a PostgreSQL table
// and into Redis sorted sets, which the query API serves.
//
// Decisions:
//   - The bucket tables are the source of truth: they cannot be rebuilt from the
//     event store, so the projection is not rebuildable and nothing else writes
//     them. Rankings are derived data, recomputed from the buckets on every refresh.
//   - "At most once per session, program and hour" is a unique key
//     (engagement_play_sessions_v1); the bucket increment counts only the rows that
//     key let in, in the same statement. So a message delivered twice (the bus is
//     at-least-once), or a player that reports the same play every few seconds,
//     counts once; the hour is that of the play's occurred_at, set when the API
//     accepted it, not when it is consumed.
//   - A batch of messages is counted in one statement and acknowledged after it
//     committed; a failure nacks the batch for redelivery, which the unique key
//     makes harmless. A message that can never be counted (undecodable, invalid) is
//     acknowledged and logged: a lost play is telemetry noise, a stuck topic is not.
//   - Rankings contain only visible programs (joined with the catalog at refresh
//     time); the query API drops any that stopped being visible since.
package engagement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"sort"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Names of the projection, its topic and its sinks.
const (
	Name = "engagement"
	// Topic is the bus topic of plays (query/app.EngagementTopic).
	Topic = "engagement.events"
	// ConsumerGroup is the Counter's consumer group.
	ConsumerGroup = "engagement_v1"
	// PlayRecordedType is the type of a play message (metadata "type").
	PlayRecordedType = "mediamesh.engagement.play_recorded.v1"
	SessionsTable    = "engagement_play_sessions_v1"
	PlaysTable       = "engagement_plays_v1"
	RankingsTable    = "engagement_rankings_v1"
)

// Play is one play message's payload (query/app.PlayRecorded writes it).
type Play struct {
	ProgramID       string    `json:"program_id"`
	EpisodeID       string    `json:"episode_id,omitempty"`
	SessionID       string    `json:"session_id"`
	PositionSeconds *int      `json:"position_seconds,omitempty"`
	OccurredAt      time.Time `json:"occurred_at"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// errPoison marks a message that can never be counted.
var errPoison = errors.New("play cannot be counted")

// Decode reads a play message; an error wraps errPoison.
func Decode(m *message.Message) (Play, error) {
	if t := m.Metadata.Get("type"); t != "" && t != PlayRecordedType {
		return Play{}, fmt.Errorf("message type %q: %w", t, errPoison)
	}
	var p Play
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return Play{}, fmt.Errorf("decode play: %w: %w", errPoison, err)
	}
	if !uuidRE.MatchString(p.ProgramID) || p.SessionID == "" || len(p.SessionID) > 128 || p.OccurredAt.IsZero() {
		return Play{}, fmt.Errorf("invalid play of %q: %w", p.ProgramID, errPoison)
	}
	return p, nil
}

// Subscriber is the bus's consumer side (a Watermill message.Subscriber, as
// infra/bus/sql and infra/bus/kafka provide, subscribed in ConsumerGroup).
type Subscriber interface {
	Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error)
}

// CounterOptions tune a Counter; zero values take the defaults.
type CounterOptions struct {
	// BatchSize is the most messages counted in one statement (500).
	BatchSize int
	// Logger receives dropped messages and retries (slog.Default()).
	Logger *slog.Logger
}

// Counter counts plays into the hourly buckets.
type Counter struct {
	pool *pgxpool.Pool
	opts CounterOptions
}

// NewCounter returns a counter writing through pool.
func NewCounter(pool *pgxpool.Pool, opts CounterOptions) (*Counter, error) {
	if pool == nil {
		return nil, errors.New("engagement counter: nil pool")
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Counter{pool: pool, opts: opts}, nil
}

// countSQL inserts the batch's (program, hour, session) keys and increments each
// bucket by the keys that were new, in one statement. Buckets are incremented in
// key order, so two concurrent batches cannot deadlock on them.
const countSQL = `WITH input AS (
	SELECT DISTINCT program_id, hour, session_id
	FROM unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS t(program_id, hour, session_id)
), fresh AS (
	INSERT INTO engagement_play_sessions_v1 (program_id, hour, session_id)
	SELECT program_id, hour, session_id FROM input ORDER BY program_id, hour, session_id
	ON CONFLICT DO NOTHING
	RETURNING program_id, hour
), counted AS (
	INSERT INTO engagement_plays_v1 AS b (program_id, hour, plays)
	SELECT program_id, hour, count(*) FROM fresh GROUP BY program_id, hour ORDER BY program_id, hour
	ON CONFLICT (program_id, hour) DO UPDATE SET plays = b.plays + EXCLUDED.plays
	RETURNING 1
)
SELECT count(*) FROM fresh`

// Count counts plays (each at most once per session, program and hour, whatever
// was counted before) and returns how many were new.
func (c *Counter) Count(ctx context.Context, plays []Play) (int, error) {
	if len(plays) == 0 {
		return 0, nil
	}
	programs := make([]string, len(plays))
	hours := make([]time.Time, len(plays))
	sessions := make([]string, len(plays))
	for i, p := range plays {
		programs[i], hours[i], sessions[i] = p.ProgramID, Hour(p.OccurredAt), p.SessionID
	}
	var n int
	if err := c.pool.QueryRow(ctx, countSQL, programs, hours, sessions).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %d plays: %w", len(plays), err)
	}
	return n, nil
}

// Hour is the bucket of a play: its hour in UTC.
func Hour(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// Run consumes Topic through sub and counts until ctx ends, then returns nil.
// The subscription is renewed with backoff when it ends.
func (c *Counter) Run(ctx context.Context, sub Subscriber) error {
	if sub == nil {
		return errors.New("engagement counter: nil subscriber")
	}
	for attempt := 0; ctx.Err() == nil; attempt++ {
		ch, err := sub.Subscribe(ctx, Topic)
		if err == nil {
			if c.consume(ctx, ch) {
				attempt = 0
			}
			err = errors.New("subscription ended")
		}
		if ctx.Err() != nil {
			return nil
		}
		c.opts.Logger.Warn("engagement subscription ended, resubscribing", "error", err.Error())
		if !sleep(ctx, attempt) {
			return nil
		}
	}
	return nil
}

// consume counts what ch delivers until it closes or ctx ends; it reports whether
// it counted anything.
func (c *Counter) consume(ctx context.Context, ch <-chan *message.Message) bool {
	progressed := false
	failures := 0
	for {
		var first *message.Message
		select {
		case <-ctx.Done():
			return progressed
		case m, ok := <-ch:
			if !ok {
				return progressed
			}
			first = m
		}
		batch := []*message.Message{first}
	drain:
		for len(batch) < c.opts.BatchSize {
			select {
			case m, ok := <-ch:
				if !ok {
					break drain
				}
				batch = append(batch, m)
			default:
				break drain
			}
		}
		plays := make([]Play, 0, len(batch))
		var ok []*message.Message
		for _, m := range batch {
			p, err := Decode(m)
			if err != nil {
				c.opts.Logger.Warn("engagement: dropping a play message", "uuid", m.UUID, "error", err.Error())
				m.Ack()
				continue
			}
			plays = append(plays, p)
			ok = append(ok, m)
		}
		if _, err := c.Count(ctx, plays); err != nil {
			for _, m := range ok {
				m.Nack()
			}
			if ctx.Err() != nil {
				return progressed
			}
			c.opts.Logger.Warn("engagement: counting plays failed; they will be delivered again", "plays", len(plays), "error", err.Error())
			if !sleep(ctx, failures) {
				return progressed
			}
			failures++
			continue
		}
		failures = 0
		progressed = true
		for _, m := range ok {
			m.Ack()
		}
	}
}

// sleep waits 50 ms·2^attempt (at most 5 s, with jitter); false if ctx ended.
func sleep(ctx context.Context, attempt int) bool {
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

// Rankings.
const (
	RankingTrending = "trending"
	RankingPopular  = "popular"
)

// RankingSink receives each refreshed ranking (query/cache/redisstore writes Redis
// sorted sets). It uses plain types so that the adapter needs nothing of this
// package.
type RankingSink interface {
	// ReplaceRanking makes the sorted set key hold exactly ids with scores (none:
	// delete it), expiring after ttl.
	ReplaceRanking(ctx context.Context, key string, ids []string, scores []float64, ttl time.Duration) error
}

// RefresherOptions tune a Refresher; zero values take the defaults.
type RefresherOptions struct {
	// TrendingEvery and PopularEvery are the refresh intervals (5 and 10 minutes).
	TrendingEvery, PopularEvery time.Duration
	// TrendingWindow is how far back trending looks (48 h) and TrendingHalfLife
	// how fast a play's weight halves with its age (6 h).
	TrendingWindow, TrendingHalfLife time.Duration
	// PopularWindow is popular's window (30 days).
	PopularWindow time.Duration
	// Top is how many programs each ranking keeps per category (1,000).
	Top int
	// KeyPrefix starts the sorted sets' keys ("mm:engagement:v1:"); a set is
	// KeyPrefix + ranking + ":" + category, "_all" for every category.
	KeyPrefix string
	// SessionRetention is how long the once-per-session keys are kept (3 h).
	SessionRetention time.Duration
	// CatalogTable is the catalog's programs table (catalog_programs_v1).
	CatalogTable string
	Logger       *slog.Logger
	Now          func() time.Time
}

// Refresher recomputes the rankings.
type Refresher struct {
	pool *pgxpool.Pool
	sink RankingSink
	opts RefresherOptions
}

// NewRefresher returns a refresher; sink may be nil (Redis off: the rankings live
// in PostgreSQL only).
func NewRefresher(pool *pgxpool.Pool, sink RankingSink, opts RefresherOptions) (*Refresher, error) {
	if pool == nil {
		return nil, errors.New("engagement refresher: nil pool")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.TrendingEvery, 5*time.Minute)
	def(&opts.PopularEvery, 10*time.Minute)
	def(&opts.TrendingWindow, 48*time.Hour)
	def(&opts.TrendingHalfLife, 6*time.Hour)
	def(&opts.PopularWindow, 30*24*time.Hour)
	def(&opts.SessionRetention, 3*time.Hour)
	if opts.Top <= 0 {
		opts.Top = 1000
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "mm:engagement:v1:"
	}
	if opts.CatalogTable == "" {
		opts.CatalogTable = "catalog_programs_v1"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Refresher{pool: pool, sink: sink, opts: opts}, nil
}

// Run refreshes both rankings at once and then on their intervals until ctx ends.
func (r *Refresher) Run(ctx context.Context) error {
	trending := time.NewTicker(r.opts.TrendingEvery)
	defer trending.Stop()
	popular := time.NewTicker(r.opts.PopularEvery)
	defer popular.Stop()
	refresh := func(ranking string) {
		if err := r.Refresh(ctx, ranking); err != nil && ctx.Err() == nil {
			r.opts.Logger.Warn("engagement: refresh failed; the previous ranking keeps serving", "ranking", ranking, "error", err.Error())
		}
	}
	refresh(RankingTrending)
	refresh(RankingPopular)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-trending.C:
			refresh(RankingTrending)
		case <-popular.C:
			refresh(RankingPopular)
		}
	}
}

// Scored is one ranked program.
type Scored struct {
	ProgramID string
	Score     float64
}

// Refresh recomputes one ranking into the rankings table and the sink. When
// another process is refreshing the same ranking it does nothing.
func (r *Refresher) Refresh(ctx context.Context, ranking string) error {
	now := r.opts.Now().UTC()
	var score string
	var from time.Time
	switch ranking {
	case RankingTrending:
		from = now.Add(-r.opts.TrendingWindow)
		// A bucket's plays count at their hour's middle, halved every half-life.
		score = fmt.Sprintf(`sum(b.plays * exp(-ln(2) * greatest(0, extract(epoch FROM ($2::timestamptz - b.hour)) - 1800) / %f))`,
			r.opts.TrendingHalfLife.Seconds())
	case RankingPopular:
		from = now.Add(-r.opts.PopularWindow)
		score = `sum(b.plays)::double precision`
	default:
		return fmt.Errorf("engagement: unknown ranking %q", ranking)
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("refresh %s: %w", ranking, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtext('mediamesh.engagement.' || $1))`, ranking).Scan(&locked); err != nil {
		return fmt.Errorf("refresh %s: lock: %w", ranking, err)
	}
	if !locked {
		return nil
	}
	rows, err := tx.Query(ctx, `WITH d AS (DELETE FROM engagement_rankings_v1 WHERE ranking = $1 RETURNING category)
		SELECT DISTINCT category FROM d`, ranking)
	if err != nil {
		return fmt.Errorf("refresh %s: %w", ranking, err)
	}
	before, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("refresh %s: %w", ranking, err)
	}
	sql := `WITH scores AS (
			SELECT b.program_id, ` + score + ` AS score FROM engagement_plays_v1 b WHERE b.hour >= $3 GROUP BY b.program_id
		), visible AS (
			SELECT s.program_id, s.score, p.category FROM scores s
			JOIN ` + pgx.Identifier{r.opts.CatalogTable}.Sanitize() + ` p ON p.id = s.program_id AND p.status = 'published'
			WHERE s.score > 0
		), ranked AS (
			SELECT '' AS category, row_number() OVER (ORDER BY score DESC, program_id DESC) AS rank, program_id, score FROM visible
			UNION ALL
			SELECT category, row_number() OVER (PARTITION BY category ORDER BY score DESC, program_id DESC), program_id, score FROM visible
		)
		INSERT INTO engagement_rankings_v1 (ranking, category, rank, program_id, score, refreshed_at)
		SELECT $1, category, rank, program_id, score, $2 FROM ranked WHERE rank <= $4
		RETURNING category, rank, program_id::text, score`
	rows, err = tx.Query(ctx, sql, ranking, now, from, r.opts.Top)
	if err != nil {
		return fmt.Errorf("refresh %s: %w", ranking, err)
	}
	type row struct {
		category string
		rank     int
		scored   Scored
	}
	var all []row
	var rw row
	if _, err := pgx.ForEachRow(rows, []any{&rw.category, &rw.rank, &rw.scored.ProgramID, &rw.scored.Score}, func() error {
		all = append(all, rw)
		return nil
	}); err != nil {
		return fmt.Errorf("refresh %s: %w", ranking, err)
	}
	if ranking == RankingTrending {
		if _, err := tx.Exec(ctx, `DELETE FROM engagement_play_sessions_v1 WHERE hour < $1`, now.Add(-r.opts.SessionRetention)); err != nil {
			return fmt.Errorf("refresh %s: sweep sessions: %w", ranking, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("refresh %s: commit: %w", ranking, err)
	}
	if r.sink == nil {
		return nil
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].category != all[j].category {
			return all[i].category < all[j].category
		}
		return all[i].rank < all[j].rank
	})
	sets := map[string][]Scored{}
	for _, c := range before {
		sets[c] = nil
	}
	for _, x := range all {
		sets[x.category] = append(sets[x.category], x.scored)
	}
	every := r.opts.TrendingEvery
	if ranking == RankingPopular {
		every = r.opts.PopularEvery
	}
	var errs []error
	for category, list := range sets {
		ids := make([]string, len(list))
		scores := make([]float64, len(list))
		for i, s := range list {
			ids[i], scores[i] = s.ProgramID, s.Score
		}
		if err := r.sink.ReplaceRanking(ctx, r.Key(ranking, category), ids, scores, 3*every); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("refresh %s: publish to the ranking sink: %w", ranking, err)
	}
	return nil
}

// Key is the sorted set of a ranking in a category ("" for every category).
func (r *Refresher) Key(ranking, category string) string {
	if category == "" {
		category = "_all"
	}
	return r.opts.KeyPrefix + ranking + ":" + category
}
