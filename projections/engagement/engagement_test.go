package engagement_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	bussql "github.com/mediamesh/mediamesh/infra/bus/sql"
	"github.com/mediamesh/mediamesh/infra/postgres/readmodel/readmodeltest"
	"github.com/mediamesh/mediamesh/infra/redis/redistest"
	"github.com/mediamesh/mediamesh/projections/engagement"
	qapp "github.com/mediamesh/mediamesh/query/app"
	"github.com/mediamesh/mediamesh/query/cache"
	"github.com/mediamesh/mediamesh/query/cache/redisstore"
)

func buckets(t *testing.T, pool *pgxpool.Pool) map[string]int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT program_id::text, hour, plays FROM engagement_plays_v1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var hour time.Time
		var n int64
		if err := rows.Scan(&id, &hour, &n); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("%s@%s", id[len(id)-4:], hour.UTC().Format("15"))] = n
	}
	return out
}

// TestCountAtMostOncePerSessionProgramHour: the same session, program and hour
// counts once however often it is delivered, within a batch or across batches.
func TestCountAtMostOncePerSessionProgramHour(t *testing.T) {
	t.Parallel()
	w := readmodeltest.New(t, readmodeltest.Options{})
	c, err := engagement.NewCounter(w.Pool, engagement.CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p1, p2 := "0190f1f4-0000-7000-8000-00000000aaa1", "0190f1f4-0000-7000-8000-00000000aaa2"
	h := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	batch := []engagement.Play{
		{ProgramID: p1, SessionID: "s1", OccurredAt: h.Add(5 * time.Minute)},
		{ProgramID: p1, SessionID: "s1", OccurredAt: h.Add(50 * time.Minute)}, // same hour: not again
		{ProgramID: p1, SessionID: "s2", OccurredAt: h.Add(time.Minute)},
		{ProgramID: p1, SessionID: "s1", OccurredAt: h.Add(61 * time.Minute)}, // next hour
		{ProgramID: p2, SessionID: "s1", OccurredAt: h},
	}
	n, err := c.Count(ctx, batch)
	if err != nil || n != 4 {
		t.Fatalf("Count = %d, %v; want 4 new", n, err)
	}
	want := map[string]int64{"aaa1@10": 2, "aaa1@11": 1, "aaa2@10": 1}
	for round := range 3 { // redelivery, whole or in part, counts nothing
		if n, err := c.Count(ctx, batch[round:]); err != nil || n != 0 {
			t.Fatalf("redelivery %d: Count = %d, %v", round, n, err)
		}
		if got := buckets(t, w.Pool); !equalMaps(got, want) {
			t.Fatalf("buckets %v, want %v", got, want)
		}
	}
	if n, err := c.Count(ctx, nil); err != nil || n != 0 {
		t.Errorf("empty batch: %d, %v", n, err)
	}
}

func equalMaps(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestCounterConsumesTheBus: plays published by the query side's handler on the
// embedded bus (Watermill SQL) are counted; a poison message is dropped and does
// not hold back the rest.
func TestCounterConsumesTheBus(t *testing.T) {
	t.Parallel()
	w := readmodeltest.New(t, readmodeltest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, err := bussql.NewPublisher(w.Pool, bussql.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bussql.NewSubscriber(w.Pool, engagement.ConsumerGroup, bussql.Config{PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	c, err := engagement.NewCounter(w.Pool, engagement.CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = c.Run(ctx, sub); close(done) }()

	p := "0190f1f4-0000-7000-8000-00000000aaa1"
	h, err := qapp.NewRecordPlayHandler(pub, func(context.Context, string) error { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(engagement.Topic, message.NewMessage("poison", []byte(`{"program_id":`))); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"s1", "s2", "s1", "s3"} {
		if err := h.Handle(ctx, qapp.RecordPlay{ProgramID: p, SessionID: s}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n int64
		_ = w.Pool.QueryRow(ctx, `SELECT COALESCE(sum(plays), 0) FROM engagement_plays_v1`).Scan(&n)
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counted %d plays, want 3 (s1 twice in one hour counts once)", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestRefreshRankings: trending weighs recent plays more, popular counts 30 days,
// both per category and overall, without invisible programs; the sorted sets
// mirror the table, and a category that lost its programs loses its set.
func TestRefreshRankings(t *testing.T) {
	t.Parallel()
	w := readmodeltest.New(t, readmodeltest.Options{})
	rc := redistest.Client(t)
	ns := redistest.Namespace(t, rc)
	store, err := redisstore.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old, _ := w.CreateProgram(t, readmodeltest.Program{Title: "Old Hit", Category: "drama", Publish: true})
	fresh, _ := w.CreateProgram(t, readmodeltest.Program{Title: "Fresh", Category: "drama", Publish: true})
	doc, _ := w.CreateProgram(t, readmodeltest.Program{Title: "Doc", Category: "documentary", Publish: true})
	hidden, res := w.CreateProgram(t, readmodeltest.Program{Title: "Hidden", Category: "comedy"})
	w.Sync(t, res)

	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	c, err := engagement.NewCounter(w.Pool, engagement.CounterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var plays []engagement.Play
	add := func(id string, n int, at time.Time) {
		for i := range n {
			plays = append(plays, engagement.Play{ProgramID: id, SessionID: fmt.Sprintf("%s-%d-%d", id[len(id)-4:], at.Unix(), i), OccurredAt: at})
		}
	}
	add(old, 30, now.Add(-40*time.Hour))     // many, long ago
	add(old, 100, now.Add(-40*24*time.Hour)) // outside popular's window
	add(fresh, 10, now.Add(-30*time.Minute)) // few, now
	add(doc, 5, now.Add(-2*time.Hour))       // another category
	add(hidden, 500, now.Add(-1*time.Hour))  // not visible
	if _, err := c.Count(ctx, plays); err != nil {
		t.Fatal(err)
	}
	r, err := engagement.NewRefresher(w.Pool, store, engagement.RefresherOptions{KeyPrefix: ns + "mm:engagement:v1:", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, ranking := range []string{engagement.RankingTrending, engagement.RankingPopular} {
		if err := r.Refresh(ctx, ranking); err != nil {
			t.Fatal(err)
		}
	}
	remote := cache.NewBreaker(store, cache.BreakerOptions{Timeout: time.Second})
	ranked := func(ranking, category string) []string {
		ids, total, err := remote.RevRange(ctx, cache.RankingKey(ns+"mm:engagement:v1:", ranking, category), 0, 10)
		if err != nil || total != len(ids) {
			t.Fatalf("%s/%s: %v, %d, %v", ranking, category, ids, total, err)
		}
		return ids
	}
	tests := []struct {
		ranking, category string
		want              []string
	}{
		{engagement.RankingTrending, "", []string{fresh, doc, old}},
		{engagement.RankingTrending, "drama", []string{fresh, old}},
		{engagement.RankingTrending, "documentary", []string{doc}},
		{engagement.RankingTrending, "comedy", []string{}},
		{engagement.RankingPopular, "", []string{old, fresh, doc}},
		{engagement.RankingPopular, "drama", []string{old, fresh}},
	}
	for _, tc := range tests {
		if got := ranked(tc.ranking, tc.category); !slices.Equal(got, tc.want) {
			t.Errorf("%s/%s = %v, want %v", tc.ranking, tc.category, got, tc.want)
		}
		var ids []string
		rows, err := w.Pool.Query(ctx, `SELECT program_id::text FROM engagement_rankings_v1 WHERE ranking = $1 AND category = $2 ORDER BY rank`, tc.ranking, tc.category)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			_ = rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		if !slices.Equal(ids, tc.want) && !(len(ids) == 0 && len(tc.want) == 0) {
			t.Errorf("table %s/%s = %v, want %v", tc.ranking, tc.category, ids, tc.want)
		}
	}
	var score float64
	if err := w.Pool.QueryRow(ctx, `SELECT score FROM engagement_rankings_v1 WHERE ranking = 'popular' AND category = '' AND rank = 1`).Scan(&score); err != nil || score != 30 {
		t.Errorf("popular score of the old hit = %v, %v; want 30 (plays of 40 days ago excluded)", score, err)
	}
	if err := w.Pool.QueryRow(ctx, `SELECT score FROM engagement_rankings_v1 WHERE ranking = 'trending' AND category = 'drama' AND rank = 2`).Scan(&score); err != nil ||
		math.Abs(score-30*math.Pow(0.5, (40*3600-1800)/(6*3600.0))) > 1e-6 {
		t.Errorf("trending score of 30 plays 40 h old = %v, %v", score, err)
	}

	// The documentary is unpublished: its category disappears from both stores.
	w.Sync(t, w.Unpublish(t, doc))
	if err := r.Refresh(ctx, engagement.RankingTrending); err != nil {
		t.Fatal(err)
	}
	if got := ranked(engagement.RankingTrending, "documentary"); len(got) != 0 {
		t.Errorf("documentary set after its program left = %v", got)
	}
	if got := ranked(engagement.RankingTrending, ""); !slices.Equal(got, []string{fresh, old}) {
		t.Errorf("overall after unpublishing = %v", got)
	}
}

func TestDecodeRejectsPoison(t *testing.T) {
	t.Parallel()
	good := message.NewMessage("1", []byte(`{"program_id":"0190f1f4-0000-7000-8000-00000000aaa1","session_id":"s","occurred_at":"2026-01-01T00:00:00Z"}`))
	if _, err := engagement.Decode(good); err != nil {
		t.Fatalf("good play: %v", err)
	}
	for name, m := range map[string]*message.Message{
		"not json":       message.NewMessage("2", []byte(`{`)),
		"bad program":    message.NewMessage("3", []byte(`{"program_id":"x","session_id":"s","occurred_at":"2026-01-01T00:00:00Z"}`)),
		"no session":     message.NewMessage("4", []byte(`{"program_id":"0190f1f4-0000-7000-8000-00000000aaa1","occurred_at":"2026-01-01T00:00:00Z"}`)),
		"no time":        message.NewMessage("5", []byte(`{"program_id":"0190f1f4-0000-7000-8000-00000000aaa1","session_id":"s"}`)),
		"another type":   func() *message.Message { m := good.Copy(); m.Metadata.Set("type", "x.v1"); return m }(),
		"session at 129": message.NewMessage("6", []byte(`{"program_id":"0190f1f4-0000-7000-8000-00000000aaa1","session_id":"`+string(make([]byte, 0))+fmt.Sprintf("%0129d", 0)+`","occurred_at":"2026-01-01T00:00:00Z"}`)),
	} {
		if _, err := engagement.Decode(m); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
