package ingest_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/command/feed"
	"github.com/mediamesh/mediamesh/command/ingest"
	"github.com/mediamesh/mediamesh/events"
	bussql "github.com/mediamesh/mediamesh/infra/bus/sql"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

// env is one ingest deployment on a fresh database: the PostgreSQL event store,
// job store and SQL bus, a service, and workers started on demand.
type env struct {
	pool  *pgxpool.Pool
	store *pgstore.Store
	jobs  *postgres.IngestJobs
	bus   bussql.Config
	svc   *ingest.Service
	cfg   ingest.Config
}

// testPartitions and testConns size one test deployment: the partitions'
// subscriptions hold a connection each while they deliver, the rest serve the
// items' appends. Test packages share one server (max_connections 100 here), so
// each deployment stays small.
const (
	testPartitions = 4
	testConns      = 8
)

// quiet gives cfg a logger that discards: the worker's warnings about items it
// retries are expected in these tests.
func quiet(cfg ingest.Config) ingest.Config {
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return cfg
}

func newEnv(t *testing.T, cfg ingest.Config) *env {
	t.Helper()
	cfg = quiet(cfg)
	_, url := pgtest.NewDB(t)
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = testConns
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e := &env{
		pool:  pool,
		store: pgstore.New(pool),
		jobs:  postgres.NewIngestJobs(pool),
		bus:   bussql.Config{Partitions: testPartitions, PollInterval: 10 * time.Millisecond, ResendInterval: 10 * time.Millisecond},
		cfg:   cfg,
	}
	pub, err := bussql.NewPublisher(pool, e.bus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	e.svc, err = ingest.NewService(e.jobs, pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// startWorker runs a worker until the returned stop is called (or the test ends);
// stop waits for Run to return.
func (e *env) startWorker(t *testing.T) (stop func()) {
	t.Helper()
	sub, err := newSubscriber(e)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ingest.NewWorker(e.jobs, sub, e.store, e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker: %v", err)
			}
			_ = sub.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

func newSubscriber(e *env) (*bussql.Subscriber, error) {
	return bussql.NewSubscriber(e.pool, ingest.ConsumerGroup, e.bus)
}

func (e *env) submit(t *testing.T, contentType string, body []byte) string {
	t.Helper()
	id, err := e.svc.Submit(context.Background(), contentType, bytes.NewReader(body), "feed-bot")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return id
}

// waitJob polls the job until cond holds, for at most a minute.
func (e *env) waitJob(t *testing.T, id string, cond func(ingest.Job) bool) ingest.Job {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		j, err := e.svc.GetJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not get there within a minute: %+v", id, summary(j))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func done(j ingest.Job) bool { return j.Done() }

func summary(j ingest.Job) string {
	return fmt.Sprintf("status=%s total=%d succeeded=%d failed=%d errors=%d %q", j.Status, j.Total, j.Succeeded, j.Failed, len(j.Errors), j.Error)
}

// eventCounts counts the store's events by type.
func (e *env) eventCounts(t *testing.T) map[string]int {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT type, count(*) FROM eventstore_events GROUP BY type`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var typ string
		var n int
		if err := rows.Scan(&typ, &n); err != nil {
			t.Fatal(err)
		}
		out[typ] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// catalog is the fixture: programs with episodes, every 3rd episode published,
// every program but each 7th published.
func catalog(programs, episodes int) []feed.Program {
	out := make([]feed.Program, programs)
	for i := range out {
		desc := fmt.Sprintf("Program %d of the fixture.", i)
		tags := []string{"fixture", "batch-" + strconv.Itoa(i%10)}
		p := feed.Program{
			ExternalID: fmt.Sprintf("acme:show:%04d", i), Title: fmt.Sprintf("Show %d", i), Description: &desc,
			Category: []string{"news", "drama", "kids"}[i%3], Language: []string{"en", "fr", "de-AT"}[i%3],
			Tags: &tags, Published: ptr(i%7 != 0),
		}
		for n := 1; n <= episodes; n++ {
			p.Episodes = append(p.Episodes, feed.Episode{
				ExternalID: fmt.Sprintf("acme:show:%04d:ep:%d", i, n), Title: fmt.Sprintf("Episode %d", n),
				Number: n, Season: ptr(1 + n/4), DurationSeconds: 600 + n, Published: ptr(n%3 == 0),
			})
		}
		out[i] = p
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// bad is an invalid item put into a feed after the valid item at index after.
type bad struct {
	after int
	// text is the item in the feed's format (an NDJSON line, a JSON element, CSV rows).
	text string
	ext  string
}

// expectation is what a feed must produce.
type expectation struct {
	total  int
	errors []ingest.ItemError // line and external id; messages are checked loosely
	msgs   []string           // a fragment each message must contain
}

func encodeNDJSON(t *testing.T, progs []feed.Program, bads []bad) ([]byte, expectation) {
	t.Helper()
	var b bytes.Buffer
	var ex expectation
	line := int64(0)
	write := func(s string) {
		line++
		b.WriteString(s)
		b.WriteByte('\n')
	}
	bi := 0
	for i, p := range progs {
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		write(string(raw))
		ex.total++
		if i%250 == 0 {
			line++
			b.WriteString("   \n") // blank lines are no items but count as lines
		}
		for bi < len(bads) && bads[bi].after == i {
			write(bads[bi].text)
			ex.total++
			ex.errors = append(ex.errors, ingest.ItemError{Line: line, ExternalID: bads[bi].ext})
			bi++
		}
	}
	return b.Bytes(), ex
}

func encodeJSONArray(t *testing.T, progs []feed.Program, bads []bad) ([]byte, expectation) {
	t.Helper()
	var b bytes.Buffer
	var ex expectation
	b.WriteString("[\n")
	elem := int64(0)
	write := func(s string) {
		if elem > 0 {
			b.WriteString(",\n")
		}
		elem++
		b.WriteString(s)
	}
	bi := 0
	for i, p := range progs {
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		write(string(raw))
		ex.total++
		for bi < len(bads) && bads[bi].after == i {
			write(bads[bi].text)
			ex.total++
			ex.errors = append(ex.errors, ingest.ItemError{Line: elem, ExternalID: bads[bi].ext})
			bi++
		}
	}
	b.WriteString("\n]\n")
	return b.Bytes(), ex
}

func csvRows(p feed.Program) [][]string {
	opt := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	optBool := func(v *bool) string {
		if v == nil {
			return ""
		}
		return strconv.FormatBool(*v)
	}
	tags := ""
	if p.Tags != nil {
		tags = strings.Join(*p.Tags, "|")
	}
	head := []string{p.ExternalID, p.Title, opt(p.Description), p.Category, p.Language, tags, optBool(p.Published)}
	if len(p.Episodes) == 0 {
		return [][]string{append(head, "", "", "", "", "", "", "")}
	}
	var rows [][]string
	for _, e := range p.Episodes {
		season := ""
		if e.Season != nil {
			season = strconv.Itoa(*e.Season)
		}
		rows = append(rows, append(append([]string(nil), head...), e.ExternalID, e.Title, strconv.Itoa(e.Number), season, opt(e.Description), strconv.Itoa(e.DurationSeconds), optBool(e.Published)))
	}
	return rows
}

func encodeCSV(t *testing.T, progs []feed.Program, bads []bad) ([]byte, expectation) {
	t.Helper()
	var b bytes.Buffer
	var ex expectation
	w := csv.NewWriter(&b)
	if err := w.Write(feed.CSVColumns); err != nil {
		t.Fatal(err)
	}
	line := int64(1)
	bi := 0
	for i, p := range progs {
		rows := csvRows(p)
		if err := w.WriteAll(rows); err != nil {
			t.Fatal(err)
		}
		line += int64(len(rows))
		ex.total++
		for bi < len(bads) && bads[bi].after == i {
			w.Flush()
			b.WriteString(bads[bi].text) // raw rows, "\n"-terminated
			ex.total++
			ex.errors = append(ex.errors, ingest.ItemError{Line: line + 1, ExternalID: bads[bi].ext})
			line += int64(strings.Count(bads[bi].text, "\n"))
			bi++
		}
	}
	w.Flush()
	return b.Bytes(), ex
}

// fixtureFeeds are the three formats of one catalog, each with its own bad items.
func fixtureFeeds(progs []feed.Program) []struct {
	name, contentType string
	encode            func(*testing.T, []feed.Program, []bad) ([]byte, expectation)
	bads              []bad
	msgs              []string
} {
	return []struct {
		name, contentType string
		encode            func(*testing.T, []feed.Program, []bad) ([]byte, expectation)
		bads              []bad
		msgs              []string
	}{
		{"ndjson", "application/x-ndjson", encodeNDJSON, []bad{
			{after: 10, ext: "bad:1", text: `{"external_id":"bad:1","title":"","category":"news","language":"en"}`},
			{after: 200, ext: "bad:2", text: `{"external_id":"bad:2","title":"T","category":"news","language":"en","episodes":[{"external_id":"e","title":"E","number":1,"duration_seconds":0}]}`},
			{after: 500, ext: "bad:3", text: `{"external_id": "bad:3", "title": ` + "\"\xff\xfe\"" + `, "category":"news","language":"en"}`},
			{after: 998, ext: "", text: `{"external_id":"bad:4",`},
		}, []string{"title: must not be empty", "duration_seconds", "invalid UTF-8", "invalid JSON"}},
		{"json array", "application/json", encodeJSONArray, []bad{
			{after: 0, ext: "bad:1", text: `{"external_id":"bad:1","title":"T","category":"News","language":"en"}`},
			{after: 300, ext: "bad:2", text: `{"external_id":"bad:2","title":"T","category":"news","language":"en","rating":5}`},
			{after: 301, ext: "bad:3", text: `{"external_id":"bad:3","title":"T","category":"news","language":"not a language"}`},
			{after: 999, ext: "bad:4", text: `{"external_id":"bad:4","title":"T","category":"news","language":"en","tags":["ok","Not OK"]}`},
		}, []string{"category", "unknown field", "language", "tags"}},
		{"csv", "text/csv", encodeCSV, []bad{
			{after: 5, ext: "bad:1", text: "bad:1,,,news,en,,,,,,,,,\n"},
			{after: 400, ext: "bad:2", text: "bad:2,T,,news,en,,,e1,E,x,,,60,\nbad:2,T,,news,en,,,e2,E,2,,,60,\n"},
			{after: 401, ext: "bad:3", text: "bad:3,T,,news,en,,,e1,E,1,,,60,\nbad:3,Other title,,news,en,,,e2,E,2,,,60,\n"},
			{after: 700, ext: "bad:4", text: "bad:4,\xff,,news,en,,,,,,,,,\n"},
		}, []string{"title: must not be empty", "number: must be an integer", "program_title differs", "invalid UTF-8"}},
	}
}

// TestIngestFeeds is the main test: a feed of 1,000 programs and 5,000
// episodes with a few bad items, in each format: exact counts and error lines. The
// first format creates the catalog; the other two carry the same catalog, so they
// must append nothing (the three parsers agree), and the first feed sent again
// appends nothing either.
func TestIngestFeeds(t *testing.T) {
	t.Parallel()
	progs := catalog(1000, 5)
	want := expectedCounts(progs)
	e := newEnv(t, ingest.Config{})
	e.startWorker(t)
	var first []byte
	for _, tc := range fixtureFeeds(progs) {
		ok := t.Run(tc.name, func(t *testing.T) {
			body, ex := tc.encode(t, progs, tc.bads)
			if first == nil {
				first = body
			}
			start := time.Now()
			job := e.waitJob(t, e.submit(t, tc.contentType, body), done)
			elapsed := time.Since(start)
			counts := e.eventCounts(t)
			t.Logf("%s: %d items (%d bytes) done in %v: %.0f items/s (%d events in the store)",
				tc.name, ex.total, len(body), elapsed.Round(time.Millisecond), float64(ex.total)/elapsed.Seconds(), sumCounts(counts))

			if job.Status != ingest.StatusCompletedWithErrors || job.Total != ex.total || job.Succeeded != len(progs) || job.Failed != len(tc.bads) {
				t.Fatalf("job %s, want completed_with_errors total=%d succeeded=%d failed=%d", summary(job), ex.total, len(progs), len(tc.bads))
			}
			if len(job.Errors) != len(ex.errors) {
				t.Fatalf("errors %+v, want %d", job.Errors, len(ex.errors))
			}
			for i, want := range ex.errors {
				got := job.Errors[i]
				if got.Line != want.Line || got.ExternalID != want.ExternalID || !strings.Contains(got.Message, tc.msgs[i]) {
					t.Errorf("error %d = %+v, want line %d external id %q and a message with %q", i, got, want.Line, want.ExternalID, tc.msgs[i])
				}
			}
			if fmt.Sprint(counts) != fmt.Sprint(want) {
				t.Fatalf("event counts\n got %v\nwant %v", counts, want)
			}
		})
		if !ok {
			return
		}
	}
	t.Run("the same feed again", func(t *testing.T) {
		again := e.waitJob(t, e.submit(t, "application/x-ndjson", first), done)
		if again.Succeeded != len(progs) || again.Failed != 4 {
			t.Fatalf("second run: %s", summary(again))
		}
		if after := e.eventCounts(t); fmt.Sprint(after) != fmt.Sprint(want) {
			t.Fatalf("the same feed again appended events:\n before %v\n after  %v", want, after)
		}
	})
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// expectedCounts is the events a catalog must produce when ingested once.
func expectedCounts(progs []feed.Program) map[string]int {
	c := map[string]int{}
	for _, p := range progs {
		c[events.TypeProgramExternalIDRegistered]++
		c[events.TypeProgramCreated]++
		if *p.Published {
			c[events.TypeProgramPublished]++
		}
		for _, e := range p.Episodes {
			c[events.TypeEpisodeRegistered]++
			c[events.TypeEpisodeAdded]++
			if *e.Published {
				c[events.TypeEpisodePublished]++
			}
		}
	}
	return c
}

// TestIngestOneFieldChanged: a feed that differs in one program field and one
// episode field appends exactly one ProgramUpdated and one EpisodeUpdated, each
// with only that field.
func TestIngestOneFieldChanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{})
	e.startWorker(t)
	progs := catalog(50, 3)
	body, _ := encodeNDJSON(t, progs, nil)
	e.waitJob(t, e.submit(t, "application/x-ndjson", body), done)
	before := e.eventCounts(t)

	changed := catalog(50, 3)
	changed[17].Title = "A brand new title"
	changed[33].Episodes[2].DurationSeconds = 4321
	changed[40].Description = nil // absent: left as it is
	changed[41].Episodes = nil    // absent episodes: kept
	body, _ = encodeNDJSON(t, changed, nil)
	job := e.waitJob(t, e.submit(t, "application/x-ndjson", body), done)
	if job.Status != ingest.StatusCompleted || job.Succeeded != 50 {
		t.Fatalf("job %s", summary(job))
	}
	after := e.eventCounts(t)
	for typ, n := range after {
		want := before[typ]
		if typ == events.TypeProgramUpdated || typ == events.TypeEpisodeUpdated {
			want++
		}
		if n != want {
			t.Errorf("%s: %d events, want %d", typ, n, want)
		}
	}
	rows, err := e.pool.Query(context.Background(), `SELECT type, data::text FROM eventstore_events WHERE type IN ($1, $2) ORDER BY position`, events.TypeProgramUpdated, events.TypeEpisodeUpdated)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var typ, data string
		if err := rows.Scan(&typ, &data); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatal(err)
		}
		var fields []string
		for k := range m {
			if k != "program_id" && k != "episode_id" {
				fields = append(fields, k)
			}
		}
		got = append(got, typ+":"+strings.Join(fields, ","))
	}
	want := []string{events.TypeProgramUpdated + ":title", events.TypeEpisodeUpdated + ":duration_seconds"}
	sort.Strings(got)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
}

// TestIngestWorkerKilled: a worker is stopped (its context cancelled) in the middle
// of a feed and another one takes over; the event store then holds exactly what a
// clean run produces: nothing lost, nothing twice. The job's counts are exact.
func TestIngestWorkerKilled(t *testing.T) {
	t.Parallel()
	progs := catalog(250, 2)
	body, ex := encodeNDJSON(t, progs, nil)

	clean := newEnv(t, ingest.Config{})
	clean.startWorker(t)
	cleanJob := clean.waitJob(t, clean.submit(t, "application/x-ndjson", body), done)

	e := newEnv(t, ingest.Config{})
	stop := e.startWorker(t)
	id := e.submit(t, "application/x-ndjson", body)
	e.waitJob(t, id, func(j ingest.Job) bool { return j.Succeeded >= 60 })
	stop()
	mid, err := e.svc.GetJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if mid.Succeeded >= ex.total {
		t.Fatalf("the first worker finished the feed (%s): the test killed nothing", summary(mid))
	}
	e.startWorker(t)
	job := e.waitJob(t, id, done)
	if job.Status != ingest.StatusCompleted || job.Succeeded != ex.total || job.Failed != 0 || cleanJob.Succeeded != ex.total {
		t.Fatalf("after the restart %s; clean run %s", summary(job), summary(cleanJob))
	}
	got, want := e.content(t), clean.content(t)
	if len(got) != len(want) {
		t.Fatalf("%d streams after the kill, %d in a clean run", len(got), len(want))
	}
	for k, w := range want {
		if got[k] != w {
			t.Fatalf("stream %s differs:\n killed %s\n clean  %s", k, got[k], w)
		}
	}
	t.Logf("worker stopped after %d of %d items; the store matches a clean run (%d streams)", mid.Succeeded, ex.total, len(got))
}

// content is the event store's catalog with generated ids replaced by external
// ids: stream -> its events' types and data, so two runs compare equal exactly
// when they wrote the same events.
func (e *env) content(t *testing.T) map[string]string {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT stream_id, version, type, data::text FROM eventstore_events ORDER BY stream_id, version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type ev struct {
		stream, typ, data string
		version           int64
	}
	var all []ev
	names := map[string]string{} // program or episode id -> external id
	for rows.Next() {
		var x ev
		if err := rows.Scan(&x.stream, &x.version, &x.typ, &x.data); err != nil {
			t.Fatal(err)
		}
		all = append(all, x)
		var d struct {
			ProgramID  string `json:"program_id"`
			EpisodeID  string `json:"episode_id"`
			ExternalID string `json:"external_id"`
		}
		if err := json.Unmarshal([]byte(x.data), &d); err != nil {
			t.Fatal(err)
		}
		switch x.typ {
		case events.TypeProgramCreated:
			names[d.ProgramID] = d.ExternalID
		case events.TypeEpisodeAdded:
			names[d.EpisodeID] = d.ExternalID
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, x := range all {
		stream, data := x.stream, x.data
		for id, ext := range names {
			stream = strings.ReplaceAll(stream, id, ext)
			data = strings.ReplaceAll(data, id, ext)
		}
		out[stream] += fmt.Sprintf("%d %s %s\n", x.version, x.typ, data)
	}
	return out
}

// TestIngestJobStatus follows one job through queued, running and completed.
func TestIngestJobStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{})
	body, _ := encodeNDJSON(t, catalog(30, 1), nil)
	id := e.submit(t, "application/x-ndjson", body)
	j, err := e.svc.GetJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != ingest.StatusQueued || j.Total != 30 || j.Succeeded != 0 {
		t.Fatalf("before any worker: %s", summary(j))
	}
	e.startWorker(t)
	j = e.waitJob(t, id, done)
	if j.Status != ingest.StatusCompleted || j.Succeeded != 30 || len(j.Errors) != 0 || j.UpdatedAt.Before(j.CreatedAt) {
		t.Fatalf("done: %+v", j)
	}
	if _, err := e.svc.GetJob(context.Background(), "not-a-job"); err == nil {
		t.Fatal("a malformed job id was found")
	}
}

// The SQL bus is what the ingest path runs on in the embedded mode.
var (
	_ message.Publisher  = (*bussql.Publisher)(nil)
	_ message.Subscriber = (*bussql.Subscriber)(nil)
)

// BenchmarkIngest measures items/s from a submitted NDJSON feed to the events
// appended and every outcome recorded (the job done), with episodesPerItem
// episodes per program, on 10 partitions as in production. Run it with a fixed
// count, e.g. -bench Ingest -benchtime 3000x.
func BenchmarkIngest(b *testing.B) {
	for _, eps := range []int{0, 2, 5} {
		b.Run(fmt.Sprintf("episodes=%d", eps), func(b *testing.B) { benchIngest(b, eps) })
	}
}

func benchIngest(b *testing.B, eps int) {
	_, url := pgtest.NewDB(b)
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	pcfg.MaxConns = int32(2*benchPartitions + 20)
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	busCfg := bussql.Config{Partitions: benchPartitions, PollInterval: 10 * time.Millisecond}
	jobs := postgres.NewIngestJobs(pool)
	pub, err := bussql.NewPublisher(pool, busCfg)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := ingest.NewService(jobs, pub, quiet(ingest.Config{Concurrency: 2 * benchPartitions}))
	if err != nil {
		b.Fatal(err)
	}
	sub, err := bussql.NewSubscriber(pool, ingest.ConsumerGroup, busCfg)
	if err != nil {
		b.Fatal(err)
	}
	w, err := ingest.NewWorker(jobs, sub, pgstore.New(pool), quiet(ingest.Config{Concurrency: 2 * benchPartitions}))
	if err != nil {
		b.Fatal(err)
	}
	var body bytes.Buffer
	for _, p := range catalog(b.N, eps) {
		raw, _ := json.Marshal(p)
		body.Write(raw)
		body.WriteByte('\n')
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	b.ResetTimer()
	start := time.Now()
	id, err := svc.Submit(ctx, "application/x-ndjson", &body, "bench")
	if err != nil {
		b.Fatal(err)
	}
	submitted := time.Since(start)
	for {
		j, err := svc.GetJob(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if j.Done() {
			if j.Succeeded != b.N {
				b.Fatalf("job %s", summary(j))
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "items/s")
	b.ReportMetric(float64(b.N)/submitted.Seconds(), "submitted-items/s")
}

// benchPartitions is the benchmark's partition count (MEDIAMESH_BENCH_PARTITIONS
// overrides 10 to study scaling).
var benchPartitions = func() int {
	if n, err := strconv.Atoi(os.Getenv("MEDIAMESH_BENCH_PARTITIONS")); err == nil && n > 0 {
		return n
	}
	return 10
}()
