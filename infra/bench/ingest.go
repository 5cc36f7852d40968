package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/command/feed"
	"github.com/mediamesh/mediamesh/command/ingest"
	"github.com/mediamesh/mediamesh/events"
	bussql "github.com/mediamesh/mediamesh/infra/bus/sql"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	pginfra "github.com/mediamesh/mediamesh/infra/postgres"
	pgsearch "github.com/mediamesh/mediamesh/infra/search/postgres"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/editorial"
	"github.com/mediamesh/mediamesh/projections/runtime"
	"github.com/mediamesh/mediamesh/projections/search"
)

// TargetIngestItemsPerS is the goal of the issue "Ingest path", point 6.
const TargetIngestItemsPerS = 5000

// IngestConfig configures Ingest. Zero values take the defaults.
type IngestConfig struct {
	// DatabaseURL is a migrated, empty scratch database; Ingest's pool has at
	// least Bus.Partitions + Concurrency + 6 connections.
	DatabaseURL string
	// Items is the feed's size in programs (default 100,000).
	Items int
	// Episodes is how many published episodes each program has (default 0).
	Episodes int
	// Bus configures the embedded bus of ingest.events as `serve` does (default:
	// 8 partitions, one message per subscription transaction).
	Bus bussql.Config
	// Concurrency is the worker's concurrency (2 per partition).
	Concurrency int
	// Timeout bounds the wait for the last item to be visible (default: 2 minutes
	// plus 1 ms per item).
	Timeout time.Duration
	// Progress receives a line per second (nil: none).
	Progress io.Writer
	// Logger receives the worker's and the runtime's warnings (nil: discarded).
	Logger *slog.Logger
}

func (c IngestConfig) withDefaults() IngestConfig {
	if c.Items <= 0 {
		c.Items = 100_000
	}
	if c.Bus.Partitions <= 0 {
		c.Bus.Partitions = 8
	}
	if c.Bus.BatchSize <= 0 {
		c.Bus.BatchSize = 1
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 2 * c.Bus.Partitions
	}
	if c.Timeout <= 0 {
		c.Timeout = 2*time.Minute + time.Duration(c.Items)*time.Millisecond
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ingestSampleEvery: one item in this many has its latency measured (feed written
// → visible in the catalog).
const ingestSampleEvery = 500

// Ingest is the "ingest" suite: a deterministic NDJSON feed of Items published
// programs (external ids "bench-NNNNNN") is submitted through ingest.Service.Submit
// (what POST /v1/ingest calls) onto the embedded bus (a Watermill SQL topic in
// the scratch database), applied by an ingest worker, and projected by the
// embedded runtime's catalog projection, all in this process. Throughput is items
// per second from the first byte of the feed until every item is in the catalog
// read model (catalog_programs_v1); latencies are those of one item in 500, from
// the moment the generator wrote it into the upload to the moment a poll (every
// 50 ms) found the catalog's checkpoint at or past the item's transaction.
func Ingest(ctx context.Context, c IngestConfig) ([]Result, error) {
	c = c.withDefaults()
	pcfg, err := pgxpool.ParseConfig(c.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("bench ingest: %w", err)
	}
	// The bus holds a connection per partition while it delivers; the worker,
	// the runtime and the polls need their own.
	pcfg.MaxConns = max(pcfg.MaxConns, int32(c.Bus.Partitions+c.Concurrency+6))
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("bench ingest: %w", err)
	}
	defer pool.Close()
	store := pgstore.New(pool)
	jobs := pginfra.NewIngestJobs(pool)
	busCfg := c.Bus
	pub, err := bussql.NewPublisher(pool, busCfg)
	if err != nil {
		return nil, fmt.Errorf("bench ingest: %w", err)
	}
	defer pub.Close()
	sub, err := bussql.NewSubscriber(pool, ingest.ConsumerGroup, busCfg)
	if err != nil {
		return nil, fmt.Errorf("bench ingest: %w", err)
	}
	defer sub.Close()
	icfg := ingest.Config{Concurrency: c.Concurrency, Logger: c.Logger}
	svc, err := ingest.NewService(jobs, pub, icfg)
	if err != nil {
		return nil, err
	}
	w, err := ingest.NewWorker(jobs, sub, store, icfg)
	if err != nil {
		return nil, err
	}
	// The projections `serve` runs: the discovery catalog, the editorial list and
	// the search index. An item is visible once it is in both PostgreSQL read
	// models (catalog and editorial); the search index, which competes with them
	// for the same cores, is reported apart (when it caught up).
	idx, err := pgsearch.New(pool)
	if err != nil {
		return nil, err
	}
	sp, err := search.New(idx, nil)
	if err != nil {
		return nil, err
	}
	rt, err := runtime.New(pool, store, []runtime.Projection{catalog.New(nil), editorial.New(nil), sp}, runtime.Options{Logger: c.Logger})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	bg.Go(func() { _ = rt.Run(rctx) })
	bg.Go(func() { _ = w.Run(rctx) })

	fmt.Fprintf(c.Progress, "ingest: %d programs with %d episodes each, %d partitions, worker concurrency %d\n", c.Items, c.Episodes, c.Bus.Partitions, c.Concurrency)
	gen := newIngestFeed(c.Items, c.Episodes)
	cpu := newCPUMeter(rctx, pool)
	start := time.Now()
	var (
		jobID     string
		submitErr error
		submitted = make(chan struct{})
	)
	go func() {
		defer close(submitted)
		jobID, submitErr = svc.Submit(rctx, feed.ContentTypeNDJSON, gen, "bench")
		gen.Close()
	}()
	applied := func() int {
		if jobID == "" {
			return 0
		}
		j, err := svc.GetJob(rctx, jobID)
		if err != nil {
			return -1
		}
		return j.Succeeded + j.Failed
	}
	visible, lat, err := waitVisible(rctx, pool, gen, c, start, submitted, applied)
	elapsed := time.Since(start)
	own, db := cpu.stop()
	searchAfter, searchErr := time.Duration(0), error(nil)
	if err == nil {
		searchAfter, searchErr = waitSearch(rctx, pool, start, c.Timeout)
	}
	<-submitted
	if submitErr != nil {
		return nil, fmt.Errorf("bench ingest: submit: %w", submitErr)
	}
	if err != nil {
		return nil, fmt.Errorf("bench ingest: %d of %d items visible: %w", visible, c.Items, err)
	}
	job, err := svc.GetJob(ctx, jobID)
	if err != nil {
		return nil, err
	}
	s := Stats{Ops: int64(visible), Units: int64(visible), Errors: int64(job.Failed), Elapsed: elapsed, Latencies: lat}
	r := Measure("ingest", "items", s)
	r.AddNote(fmt.Sprintf("embedded mode: NDJSON feed of %d published programs (%d episodes each) through ingest.Service.Submit, the Watermill SQL bus (%d partitions) and one worker (concurrency %d), until every program is in both PostgreSQL read models, catalog and editorial, with the search projection running beside them as in serve; latencies: 1 item in %d, feed written → the lower of the two checkpoints past its transaction (polled every 50 ms); job %s %s",
		c.Items, c.Episodes, c.Bus.Partitions, c.Concurrency, ingestSampleEvery, job.ID, job.Status))
	if visible > 0 && own+db > 0 {
		r.AddNote(fmt.Sprintf("CPU: %.1f s in this process, %.1f s in its database backends (%.2f ms per item in all, so %.0f items/s would fill %d CPUs)",
			own.Seconds(), db.Seconds(), float64((own+db).Microseconds())/1000/float64(visible),
			float64(goruntime.NumCPU())/((own+db).Seconds()/float64(visible)), goruntime.NumCPU()))
	}
	if searchErr != nil {
		r.AddNote(fmt.Sprintf("search index: not caught up: %v", searchErr))
	} else {
		r.AddNote(fmt.Sprintf("search index (running beside, not timed): every item searchable after %.1f s (%.0f items/s)",
			searchAfter.Seconds(), float64(visible)/searchAfter.Seconds()))
	}
	r.AddTarget("throughput_per_s", AtLeast, TargetIngestItemsPerS)
	return []Result{r}, nil
}

// waitSearch waits, after the measured run, until the search projection has
// applied the log's last event, and returns how long after start that was.
func waitSearch(ctx context.Context, pool *pgxpool.Pool, start time.Time, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		var done bool
		err := pool.QueryRow(ctx, `SELECT coalesce((SELECT position FROM projection_checkpoints WHERE name = $1 AND version = $2), 0)
			>= (SELECT coalesce(max(position), 0) FROM eventstore_events)`, search.Name, search.Version).Scan(&done)
		if err != nil {
			return 0, err
		}
		if done {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sampleTxEndSQL finds, for sampled items' external id pointer streams, the
// position of the last event of their programs' streams (written in the same
// transaction as the pointer, the program's part last).
const sampleTxEndSQL = `SELECT x.stream_id,
	(SELECT e.position FROM eventstore_events e WHERE e.stream_id = 'program-' || (x.data->>'program_id')
		ORDER BY e.version DESC LIMIT 1)
FROM eventstore_events x WHERE x.stream_id = ANY($1::text[])`

// waitVisible waits until all c.Items programs are in the catalog read model and
// the catalog and editorial projections have both applied the last event,
// printing progress each second. Polls are cheap index lookups, so that the
// measurement does not slow what it measures: the catalog's checkpoint
// (everything at or below it is applied) every 50 ms, the positions of the sampled
// items not found yet every 200 ms; the read model itself is counted once a second,
// and again when the checkpoint passed every sample, to confirm the end.
// It returns how many were visible and the sampled items' latencies.
func waitVisible(ctx context.Context, pool *pgxpool.Pool, gen *ingestFeed, c IngestConfig, start time.Time, submitted <-chan struct{}, applied func() int) (int, []time.Duration, error) {
	deadline := time.NewTimer(c.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var (
		lat        []time.Duration
		seen       = map[string]bool{}   // sampled external ids found visible
		positions  = map[string]int64{}  // sampled pointer stream -> its program's last position
		pointers   = map[string]string{} // pointer stream -> external id
		visible    int
		lastLookup time.Time
		lastPrint  = start
		lastCount  int
		head       int64 // the log's last position once the catalog holds every program
	)
	count := func() error {
		return pool.QueryRow(ctx, `SELECT count(*) FROM `+catalog.ProgramsTable).Scan(&visible)
	}
	for {
		select {
		case <-ctx.Done():
			return visible, lat, ctx.Err()
		case <-deadline.C:
			return visible, lat, fmt.Errorf("not all visible after %s", c.Timeout)
		case <-tick.C:
		}
		// The lower checkpoint of the two read models (0 until each has one):
		// everything at or below it is in both.
		var checkpoint int64
		err := pool.QueryRow(ctx, `SELECT CASE WHEN count(*) = 2 THEN min(position) ELSE 0 END FROM projection_checkpoints
			WHERE (name, version) IN (($1, $2), ($3, $4))`,
			catalog.Name, catalog.Version, editorial.Name, editorial.Version).Scan(&checkpoint)
		if err != nil {
			return visible, lat, fmt.Errorf("checkpoints: %w", err)
		}
		now := time.Now()
		var unknown []string
		lookup := now.Sub(lastLookup) >= 200*time.Millisecond
		for _, id := range gen.pendingSamples(seen) {
			ptr := events.ProgramExternalIDStreamID(id)
			pointers[ptr] = id
			if _, ok := positions[ptr]; !ok && lookup {
				unknown = append(unknown, ptr)
			}
		}
		if lookup {
			lastLookup = now
		}
		if len(unknown) > 0 {
			rows, err := pool.Query(ctx, sampleTxEndSQL, unknown)
			if err != nil {
				return visible, lat, fmt.Errorf("find sampled programs: %w", err)
			}
			for rows.Next() {
				var ptr string
				var pos int64
				if err := rows.Scan(&ptr, &pos); err != nil {
					rows.Close()
					return visible, lat, err
				}
				positions[ptr] = pos
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return visible, lat, err
			}
		}
		for ptr, pos := range positions {
			if id := pointers[ptr]; !seen[id] && pos <= checkpoint {
				seen[id] = true
				lat = append(lat, now.Sub(gen.writtenAt(id)))
			}
		}
		allSeen := gen.written() == c.Items && len(seen) == gen.sampleCount()
		if now.Sub(lastPrint) >= time.Second || allSeen {
			if err := count(); err != nil {
				return visible, lat, fmt.Errorf("count catalog programs: %w", err)
			}
		}
		if now.Sub(lastPrint) >= time.Second || visible >= c.Items {
			written := gen.written()
			state, done := "uploading", 0
			select {
			case <-submitted:
				state, done = "submitted", applied()
			default:
			}
			fmt.Fprintf(c.Progress, "ingest: %5.1fs  %s %d/%d  applied %d  visible %d (%.0f items/s now, %.0f overall)\n",
				now.Sub(start).Seconds(), state, written, c.Items, done, visible,
				float64(visible-lastCount)/now.Sub(lastPrint).Seconds(), float64(visible)/now.Sub(start).Seconds())
			lastPrint, lastCount = now, visible
		}
		if visible >= c.Items {
			// Every program is in the catalog; the run ends when the editorial
			// read model has applied the last event too.
			if head == 0 {
				if err := pool.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM eventstore_events`).Scan(&head); err != nil {
					return visible, lat, fmt.Errorf("head position: %w", err)
				}
			}
			if checkpoint >= head {
				return visible, lat, nil
			}
		}
	}
}

// ingestFeed generates the bench feed as an io.Reader (NDJSON, one program per
// line), recording when each sampled item was handed to the reader.
type ingestFeed struct {
	items, episodes int
	pr              *io.PipeReader
	mu              sync.Mutex
	samples         map[string]time.Time
	count           int
}

func newIngestFeed(items, episodes int) *ingestFeed {
	pr, pw := io.Pipe()
	g := &ingestFeed{items: items, episodes: episodes, pr: pr, samples: map[string]time.Time{}}
	go func() { pw.CloseWithError(g.write(pw)) }()
	return g
}

func (g *ingestFeed) Read(p []byte) (int, error) { return g.pr.Read(p) }

// Close stops the generator (the submission is over).
func (g *ingestFeed) Close() { _ = g.pr.CloseWithError(errors.New("submission over")) }

func (g *ingestFeed) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i := range g.items {
		p := IngestProgram(i, g.episodes)
		if err := enc.Encode(p); err != nil {
			return err
		}
		if i%ingestSampleEvery == 0 || i == g.items-1 {
			// Flush so the sampled item's time is when the reader gets it.
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		g.mu.Lock()
		if i%ingestSampleEvery == 0 {
			g.samples[p.ExternalID] = time.Now()
		}
		g.count = i + 1
		g.mu.Unlock()
	}
	return bw.Flush()
}

func (g *ingestFeed) written() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.count
}

func (g *ingestFeed) writtenAt(id string) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.samples[id]
}

// sampleCount returns how many items are sampled so far.
func (g *ingestFeed) sampleCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.samples)
}

// pendingSamples lists the sampled items written but not yet seen.
func (g *ingestFeed) pendingSamples(seen map[string]bool) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for id := range g.samples {
		if !seen[id] {
			out = append(out, id)
		}
	}
	return out
}

// IngestProgram is program i of the bench feed: published, with a description,
// tags and episodes published episodes; the same i always gives the same program.
func IngestProgram(i, episodes int) feed.Program {
	yes := true
	desc := fmt.Sprintf("Bench program %d, generated for the ingest suite.", i)
	tags := []string{"bench", fmt.Sprintf("group-%d", i%50)}
	p := feed.Program{
		ExternalID:  fmt.Sprintf("bench-%06d", i),
		Title:       fmt.Sprintf("Bench Program %d", i),
		Description: &desc,
		Category:    []string{"news", "documentary", "drama", "comedy", "kids", "sports"}[i%6],
		Language:    []string{"en", "fr", "de", "es"}[i%4],
		Tags:        &tags,
		Published:   &yes,
	}
	for k := range episodes {
		season := 1
		p.Episodes = append(p.Episodes, feed.Episode{
			ExternalID:      fmt.Sprintf("%s-e%02d", p.ExternalID, k+1),
			Title:           fmt.Sprintf("Episode %d", k+1),
			Number:          k + 1,
			Season:          &season,
			DurationSeconds: 600 + 60*(i%40),
			Published:       &yes,
		})
	}
	return p
}
