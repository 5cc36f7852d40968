package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mediamesh/mediamesh/query/app"
)

const (
	progA = "0190f1f4-0000-7000-8000-00000000000a"
	progB = "0190f1f4-0000-7000-8000-00000000000b"
	epA1  = "0190f1f4-0000-7000-8000-0000000000a1"
)

// memory is an in-memory read model of every discovery port. includeAt is the
// position from which reads "include" a write (0: always).
type memory struct {
	mu        sync.Mutex
	programs  map[string]*app.Program
	episodes  map[string][]app.Episode
	position  int64
	includeAt int64
	reads     int
	ranked    []string
	hits      app.SearchHits
}

func newMemory() *memory {
	pub := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &memory{
		programs: map[string]*app.Program{
			progA: {ID: progA, Title: "A", Category: "drama", Language: "en", Tags: nil, PublishedAt: &pub, EpisodeCount: 1, Version: 3,
				Images: app.Images{Poster: &app.ImageSet{Small: "/media/p/s.webp", Medium: "/media/p/m.webp", Large: "https://cdn.example/l.webp", Original: "/media/p/o.jpg"}}},
			progB: {ID: progB, Title: "B", Category: "comedy", Language: "fr", Tags: []string{"x"}, Version: 2},
		},
		episodes: map[string][]app.Episode{progA: {
			{ID: epA1, ProgramID: progA, Title: "E1", Number: 1, Season: 1, DurationSeconds: 60},
			{ID: "0190f1f4-0000-7000-8000-0000000000a2", ProgramID: progA, Title: "E2", Number: 2, Season: 1, DurationSeconds: 60},
			{ID: "0190f1f4-0000-7000-8000-0000000000a3", ProgramID: progA, Title: "S2E1", Number: 1, Season: 2, DurationSeconds: 60},
		}},
		position: 100,
	}
}

func (m *memory) snap(after *app.WritePoint) app.Snapshot {
	m.reads++
	return app.Snapshot{Source: app.SourcePostgres, Position: m.position, Includes: after == nil || m.position >= m.includeAt}
}

func (m *memory) Program(_ context.Context, id string, after *app.WritePoint) (*app.Program, int64, app.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.programs[id]
	if p == nil {
		return nil, 0, m.snap(after), nil
	}
	cp := *p
	return &cp, p.Version, m.snap(after), nil
}

func (m *memory) Programs(_ context.Context, ids []string, after *app.WritePoint) (map[string]*app.Program, app.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]*app.Program{}
	for _, id := range ids {
		if p := m.programs[id]; p != nil {
			out[id] = p
		}
	}
	return out, m.snap(after), nil
}

func (m *memory) Episodes(_ context.Context, id string, after *app.WritePoint) ([]app.Episode, bool, app.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.episodes[id], m.programs[id] != nil, m.snap(after), nil
}

func (m *memory) Episode(_ context.Context, id string, after *app.WritePoint) (*app.Episode, string, app.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for pid, eps := range m.episodes {
		for _, e := range eps {
			if e.ID == id {
				return &e, pid, m.snap(after), nil
			}
		}
	}
	return nil, "", m.snap(after), nil
}

func (m *memory) Browse(_ context.Context, f app.BrowseFilter, after *app.WritePoint) ([]app.Program, int, app.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return []app.Program{*m.programs[progA]}, 1, m.snap(after), nil
}

func (m *memory) Categories(_ context.Context, after *app.WritePoint) ([]app.Category, app.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return nil, m.snap(after), nil
}

func (m *memory) Search(_ context.Context, q app.SearchQuery, after *app.WritePoint) (app.SearchHits, app.Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.snap(after)
	s.Source = app.SourceSearch
	return m.hits, s, nil
}

func (m *memory) Ranked(_ context.Context, ranking, category string, offset, limit int) ([]string, int, error) {
	return m.ranked, len(m.ranked), nil
}

func (m *memory) Checkpoints(context.Context) (map[string]int64, error) {
	return map[string]int64{app.ProjectionCatalog: m.position}, nil
}

// waiter advances the memory's position when waited on, as a projection would.
type waiter struct {
	m     *memory
	calls []int64
	block bool
}

func (w *waiter) WaitForPosition(ctx context.Context, name string, pos int64) error {
	w.calls = append(w.calls, pos)
	if w.block {
		<-ctx.Done()
		return ctx.Err()
	}
	w.m.mu.Lock()
	w.m.position = max(w.m.position, pos)
	w.m.mu.Unlock()
	return nil
}

type publisher struct {
	mu   sync.Mutex
	msgs []*message.Message
	err  error
}

func (p *publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if topic != app.EngagementTopic {
		return fmt.Errorf("topic %q", topic)
	}
	if p.err != nil {
		return p.err
	}
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func newService(t *testing.T, m *memory, w app.ProjectionWaiter, opts app.DiscoveryOptions) (*app.Discovery, *publisher) {
	t.Helper()
	pub := &publisher{}
	d, err := app.NewDiscovery(app.DiscoveryDeps{Programs: m, Episodes: m, Episode: m, Browse: m, Categories: m, Search: m,
		Rankings: m, Checkpoints: m, Waiter: w, Plays: pub}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d, pub
}

func TestNewDiscoveryRejectsMissingReadModels(t *testing.T) {
	t.Parallel()
	if _, err := app.NewDiscovery(app.DiscoveryDeps{}, app.DiscoveryOptions{}); err == nil {
		t.Fatal("accepted no read models")
	}
}

func TestProgramByIDRendersTheDiscoveryShape(t *testing.T) {
	t.Parallel()
	d, _ := newService(t, newMemory(), nil, app.DiscoveryOptions{})
	a, err := d.ProgramByID(context.Background(), app.ProgramByID{ID: progA, ReadOptions: app.ReadOptions{Base: "http://h:8080"}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"` + progA + `","title":"A","description":"","category":"drama","language":"en","tags":[],` +
		`"published_at":"2026-01-02T03:04:05Z","episode_count":1,"images":{"poster":{"small":"http://h:8080/media/p/s.webp",` +
		`"medium":"http://h:8080/media/p/m.webp","large":"https://cdn.example/l.webp","original":"http://h:8080/media/p/o.jpg"}},"version":3}`
	if string(a.Body) != want {
		t.Errorf("body\n got %s\nwant %s", a.Body, want)
	}
	if !a.BaseDependent || a.Version != 3 || a.Position != 100 || a.Consistent || !strings.HasPrefix(a.ETag, `"`) {
		t.Errorf("answer %+v", a)
	}
	cdn, _ := newService(t, newMemory(), nil, app.DiscoveryOptions{CDNBaseURL: "https://cdn.example/"})
	a2, err := cdn.ProgramByID(context.Background(), app.ProgramByID{ID: progA, ReadOptions: app.ReadOptions{Base: "http://h:8080"}})
	if err != nil || a2.BaseDependent || !strings.Contains(string(a2.Body), `"small":"https://cdn.example/media/p/s.webp"`) {
		t.Errorf("with a CDN base: %s, %v", a2.Body, err)
	}
	if a.ETag == a2.ETag {
		t.Error("different bodies share an ETag")
	}
	for _, id := range []string{progA[:10], "0190f1f4-0000-7000-8000-00000000dead"} {
		_, err := d.ProgramByID(context.Background(), app.ProgramByID{ID: id})
		var missing *app.MissingError
		if !errors.Is(err, app.ErrNotFound) || !errors.As(err, &missing) || missing.What != "program" {
			t.Errorf("ProgramByID(%q) = %v, want a MissingError", id, err)
		}
	}
}

func TestProgramEpisodesPagesAndFilters(t *testing.T) {
	t.Parallel()
	d, _ := newService(t, newMemory(), nil, app.DiscoveryOptions{})
	type page struct {
		Items []struct {
			Title string `json:"title"`
		} `json:"items"`
		Page, Limit, Total int
	}
	tests := []struct {
		q      app.ProgramEpisodes
		titles []string
		total  int
	}{
		{app.ProgramEpisodes{ProgramID: progA}, []string{"E1", "E2", "S2E1"}, 3},
		{app.ProgramEpisodes{ProgramID: progA, Season: 1}, []string{"E1", "E2"}, 2},
		{app.ProgramEpisodes{ProgramID: progA, Season: 2}, []string{"S2E1"}, 1},
		{app.ProgramEpisodes{ProgramID: progA, Page: 2, Limit: 2}, []string{"S2E1"}, 3},
		{app.ProgramEpisodes{ProgramID: progA, Page: 1 << 62, Limit: 50}, []string{}, 3},
		{app.ProgramEpisodes{ProgramID: progB}, []string{}, 0},
	}
	for _, tc := range tests {
		a, err := d.ProgramEpisodes(context.Background(), tc.q)
		if err != nil {
			t.Fatalf("%+v: %v", tc.q, err)
		}
		var p page
		if err := json.Unmarshal(a.Body, &p); err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, it := range p.Items {
			got = append(got, it.Title)
		}
		if !reflect.DeepEqual(got, tc.titles) || p.Total != tc.total {
			t.Errorf("%+v: %v total %d, want %v total %d", tc.q, got, p.Total, tc.titles, tc.total)
		}
	}
	for _, q := range []app.ProgramEpisodes{{ProgramID: progA, Season: -1}, {ProgramID: progA, Limit: 51}, {ProgramID: progA, Page: -1}} {
		var ve *app.ValidationError
		if _, err := d.ProgramEpisodes(context.Background(), q); !errors.As(err, &ve) {
			t.Errorf("%+v: %v, want a validation error", q, err)
		}
	}
	if _, err := d.ProgramEpisodes(context.Background(), app.ProgramEpisodes{ProgramID: "0190f1f4-0000-7000-8000-00000000dead"}); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("episodes of an invisible program: %v", err)
	}
}

func TestEpisodeByID(t *testing.T) {
	t.Parallel()
	d, _ := newService(t, newMemory(), nil, app.DiscoveryOptions{})
	a, err := d.EpisodeByID(context.Background(), app.EpisodeByID{ID: epA1})
	if err != nil || a.ProgramID != progA || !strings.Contains(string(a.Body), `"program_id":"`+progA+`"`) {
		t.Fatalf("episode: %s, %v", a.Body, err)
	}
	var missing *app.MissingError
	if _, err := d.EpisodeByID(context.Background(), app.EpisodeByID{ID: "0190f1f4-0000-7000-8000-00000000dead"}); !errors.As(err, &missing) || missing.What != "episode" {
		t.Errorf("unknown episode: %v", err)
	}
}

func TestQueryValidation(t *testing.T) {
	t.Parallel()
	fieldsOf := func(err error) []string {
		var ve *app.ValidationError
		if !errors.As(err, &ve) {
			return nil
		}
		var out []string
		for _, f := range ve.Fields {
			out = append(out, f.Field)
		}
		return out
	}
	browse := []struct {
		q      app.BrowsePrograms
		fields []string
		want   app.BrowseFilter
	}{
		{app.BrowsePrograms{}, nil, app.BrowseFilter{Sort: "recent", Limit: 20}},
		{app.BrowsePrograms{Category: "true-crime", Language: "EN-us", Tag: "noir", Sort: "title", Page: 3, Limit: 10}, nil,
			app.BrowseFilter{Category: "true-crime", Language: "en-US", Tag: "noir", Sort: "title", Offset: 20, Limit: 10}},
		{app.BrowsePrograms{Category: "Drama"}, []string{"category"}, app.BrowseFilter{}},
		{app.BrowsePrograms{Tag: strings.Repeat("a", 65)}, []string{"tag"}, app.BrowseFilter{}},
		{app.BrowsePrograms{Language: "not a tag"}, []string{"language"}, app.BrowseFilter{}},
		{app.BrowsePrograms{Sort: "popular", Limit: 51, Page: -1}, []string{"sort", "page", "limit"}, app.BrowseFilter{}},
	}
	for _, tc := range browse {
		f, _, err := tc.q.Normalize()
		if got := fieldsOf(err); !reflect.DeepEqual(got, tc.fields) || (tc.fields == nil && f != tc.want) {
			t.Errorf("browse %+v: %+v, %v (fields %v); want %+v, fields %v", tc.q, f, err, got, tc.want, tc.fields)
		}
	}
	search := []struct {
		q      app.Search
		fields []string
		want   app.SearchQuery
	}{
		{app.Search{Q: "  Nordic   NOIR "}, nil, app.SearchQuery{Text: "nordic noir", Page: 1, Limit: 20}},
		{app.Search{Q: "x", Category: "drama", Language: "pt-br", Page: 2, Limit: 50}, nil, app.SearchQuery{Text: "x", Category: "drama", Language: "pt-BR", Page: 2, Limit: 50}},
		{app.Search{}, []string{"q"}, app.SearchQuery{}},
		{app.Search{Q: "   "}, []string{"q"}, app.SearchQuery{}},
		{app.Search{Q: strings.Repeat("é", 201)}, []string{"q"}, app.SearchQuery{}},
		{app.Search{Q: strings.Repeat("é", 200)}, nil, app.SearchQuery{Text: strings.Repeat("é", 200), Page: 1, Limit: 20}},
		{app.Search{Q: "a\x00"}, []string{"q"}, app.SearchQuery{}},
		{app.Search{Q: "\xff"}, []string{"q"}, app.SearchQuery{}},
		{app.Search{Q: "x", Limit: 51}, []string{"limit"}, app.SearchQuery{}},
	}
	for _, tc := range search {
		sq, err := tc.q.Normalize()
		if got := fieldsOf(err); !reflect.DeepEqual(got, tc.fields) || (tc.fields == nil && sq != tc.want) {
			t.Errorf("search %+v: %+v, %v; want %+v, fields %v", tc.q, sq, err, tc.want, tc.fields)
		}
	}
	if _, _, _, err := (app.Ranked{Category: "no slug", Limit: 0, Page: 0}).Normalize(); !reflect.DeepEqual(fieldsOf(err), []string{"category"}) {
		t.Errorf("ranked: %v", err)
	}
	pos := func(n int) *int { return &n }
	plays := []struct {
		q      app.RecordPlay
		fields []string
	}{
		{app.RecordPlay{ProgramID: progA, SessionID: "s"}, nil},
		{app.RecordPlay{ProgramID: strings.ToUpper(progA), EpisodeID: epA1, SessionID: strings.Repeat("s", 128), PositionSeconds: pos(86400)}, nil},
		{app.RecordPlay{}, []string{"program_id", "session_id"}},
		{app.RecordPlay{ProgramID: progA, EpisodeID: "x", SessionID: "has space", PositionSeconds: pos(-1)}, []string{"episode_id", "session_id", "position_seconds"}},
		{app.RecordPlay{ProgramID: progA, SessionID: strings.Repeat("s", 129)}, []string{"session_id"}},
	}
	for _, tc := range plays {
		_, err := tc.q.Validate()
		if got := fieldsOf(err); !reflect.DeepEqual(got, tc.fields) {
			t.Errorf("play %+v: fields %v, want %v", tc.q, got, tc.fields)
		}
	}
}

func TestWritePointProgramID(t *testing.T) {
	t.Parallel()
	for stream, want := range map[string]string{
		"program-" + progA:           progA,
		"program-not-a-uuid":         "",
		"asset-" + progA:             "",
		"program-" + progA + "-x":    "",
		"PROGRAM-" + progA:           "",
		"program-" + progA[:35] + "": "",
	} {
		if got := (app.WritePoint{StreamID: stream}).ProgramID(); got != want {
			t.Errorf("ProgramID(%q) = %q, want %q", stream, got, want)
		}
	}
}

// TestConsistencyWait: a read that does not include the token's write waits on
// the projection (never polling) and answers once it does; a wait that runs out is
// ErrNotConsistent, as is a missing waiter.
func TestConsistencyWait(t *testing.T) {
	t.Parallel()
	after := &app.WritePoint{StreamID: "program-" + progA, Version: 3, Position: 150}

	m := newMemory()
	m.includeAt = 150
	w := &waiter{m: m}
	d, _ := newService(t, m, w, app.DiscoveryOptions{})
	a, err := d.ProgramByID(context.Background(), app.ProgramByID{ID: progA, ReadOptions: app.ReadOptions{After: after}})
	if err != nil || !a.Consistent || a.Position != 150 {
		t.Fatalf("answer %+v, %v", a, err)
	}
	if !reflect.DeepEqual(w.calls, []int64{150}) || m.reads != 2 {
		t.Errorf("waited for %v over %d reads; want one wait for 150 between two reads", w.calls, m.reads)
	}

	// A row-version check can need more than the position: wait past what was seen.
	m2 := newMemory()
	m2.includeAt = 151
	w2 := &waiter{m: m2}
	d2, _ := newService(t, m2, w2, app.DiscoveryOptions{})
	if _, err := d2.Categories(context.Background(), app.Categories{ReadOptions: app.ReadOptions{After: after}}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(w2.calls, []int64{150, 151}) {
		t.Errorf("waits %v, want 150 then 151", w2.calls)
	}

	m3 := newMemory()
	m3.includeAt = 1000
	d3, _ := newService(t, m3, &waiter{m: m3, block: true}, app.DiscoveryOptions{ConsistencyWait: 30 * time.Millisecond})
	start := time.Now()
	_, err = d3.BrowsePrograms(context.Background(), app.BrowsePrograms{ReadOptions: app.ReadOptions{After: after}})
	if !errors.Is(err, app.ErrNotConsistent) || time.Since(start) > time.Second {
		t.Errorf("timed-out wait: %v after %s", err, time.Since(start))
	}

	d4, _ := newService(t, m3, nil, app.DiscoveryOptions{})
	if _, err := d4.EpisodeByID(context.Background(), app.EpisodeByID{ID: epA1, ReadOptions: app.ReadOptions{After: after}}); !errors.Is(err, app.ErrNotConsistent) {
		t.Errorf("without a waiter: %v", err)
	}
	if a, err := d4.ProgramByID(context.Background(), app.ProgramByID{ID: progA}); err != nil || a.Consistent {
		t.Errorf("without a token: %+v, %v", a, err)
	}
}

func TestSearchAndRankingsHydrate(t *testing.T) {
	t.Parallel()
	m := newMemory()
	m.hits = app.SearchHits{IDs: []string{progB, "0190f1f4-0000-7000-8000-00000000dead", progA}, Total: 3,
		Facets: map[string]map[string]int{app.FacetCategory: {"drama": 1, "comedy": 1}}}
	m.ranked = []string{progA, "0190f1f4-0000-7000-8000-00000000dead"}
	d, _ := newService(t, m, nil, app.DiscoveryOptions{})
	a, err := d.Search(context.Background(), app.Search{Q: "a"})
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
		Total  int                       `json:"total"`
		Facets map[string]map[string]int `json:"facets"`
	}
	if err := json.Unmarshal(a.Body, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 2 || res.Items[0].ID != progB || res.Items[1].ID != progA || res.Total != 3 ||
		res.Facets["category"]["drama"] != 1 || res.Facets["language"] == nil {
		t.Errorf("search answer %s", a.Body)
	}
	tr, err := d.Trending(context.Background(), app.Ranked{})
	if err != nil || !strings.Contains(string(tr.Body), progA) || strings.Contains(string(tr.Body), "dead") || strings.Contains(string(tr.Body), "facets") {
		t.Errorf("trending %s, %v", tr.Body, err)
	}
	cats, err := d.Categories(context.Background(), app.Categories{})
	if err != nil || string(cats.Body) != "[]" {
		t.Errorf("categories %s, %v", cats.Body, err)
	}
}

func TestRecordPlayPublishes(t *testing.T) {
	t.Parallel()
	m := newMemory()
	at := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	d, pub := newService(t, m, nil, app.DiscoveryOptions{Now: func() time.Time { return at }})
	five := 5
	if err := d.RecordPlay(context.Background(), app.RecordPlay{ProgramID: progA, EpisodeID: epA1, SessionID: "s1", PositionSeconds: &five}); err != nil {
		t.Fatal(err)
	}
	if len(pub.msgs) != 1 {
		t.Fatalf("%d messages", len(pub.msgs))
	}
	msg := pub.msgs[0]
	var p app.PlayRecorded
	if err := json.Unmarshal(msg.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if p.ProgramID != progA || p.EpisodeID != epA1 || p.SessionID != "s1" || *p.PositionSeconds != 5 || !p.OccurredAt.Equal(at) ||
		msg.Metadata.Get(app.MetadataType) != app.PlayRecordedType || msg.Metadata.Get(app.MetadataPartitionKey) != progA || msg.UUID == "" {
		t.Errorf("message %+v %s", msg.Metadata, msg.Payload)
	}
	if err := d.RecordPlay(context.Background(), app.RecordPlay{ProgramID: "0190f1f4-0000-7000-8000-00000000dead", SessionID: "s"}); !errors.Is(err, app.ErrNotFound) {
		t.Errorf("play of an unknown program: %v", err)
	}
	pub.err = errors.New("bus down")
	if err := d.RecordPlay(context.Background(), app.RecordPlay{ProgramID: progA, SessionID: "s"}); !errors.Is(err, app.ErrUnavailable) {
		t.Errorf("bus failure: %v", err)
	}
	if len(pub.msgs) != 1 {
		t.Errorf("%d messages after refused plays", len(pub.msgs))
	}
}

func TestResponseVariantsAreMadeOnce(t *testing.T) {
	t.Parallel()
	r := app.NewResponse([]byte(`{"a":1}`), app.Snapshot{})
	var calls sync.Map
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			b := r.Variant(app.EncodingGzip, func(b []byte) []byte {
				calls.Store(time.Now().UnixNano(), true)
				return append([]byte("gz:"), b...)
			})
			if string(b) != `gz:{"a":1}` {
				t.Errorf("variant %q", b)
			}
		})
	}
	wg.Wait()
	first := r.Variant(app.EncodingGzip, nil)
	if string(first) != `gz:{"a":1}` {
		t.Errorf("memoized variant %q", first)
	}
	if string(r.Body) != `{"a":1}` || app.NewResponse([]byte(`{"a":2}`), app.Snapshot{}).ETag == r.ETag {
		t.Error("ETag does not follow the body")
	}
}

func TestPositionsAreMonotonic(t *testing.T) {
	t.Parallel()
	var p app.Positions
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() { p.Observe("catalog", int64(i)) })
	}
	wg.Wait()
	if got := p.Observe("catalog", 5); got != 99 || p.Get("catalog") != 99 || p.Get("search") != 0 {
		t.Errorf("positions %d %d", got, p.Get("catalog"))
	}
}
