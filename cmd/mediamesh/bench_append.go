package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/bench"
	"github.com/mediamesh/mediamesh/infra/config"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
)

// appendBatchSize is the events per append of store_batched (the 100).
const appendBatchSize = 100

// Targets of the issue "Write side", point 9.
const (
	targetHTTPCommandsPerS = 2000
	targetHTTPCommandsP99  = 50
	targetStoreEventsPerS  = 20000
)

// benchAppend measures the write path on a scratch database:
//
//   - http_commands: POST /v1/programs (one event each, on a new program) through
//     the real HTTP API of an in-process server on 127.0.0.1, with an editor token,
//     by Concurrency keep-alive clients;
//   - store_batched: raw appends of 100 events to new streams through the
//     PostgreSQL event store, with the same concurrency;
//   - store_single: the same with one event per append, a diagnostic without a
//     target that separates the store's cost from the HTTP layer's;
//   - the baseline of all three: plain single-row INSERTs of the same payload through
//     pgx into a scratch table, with the same concurrency (insert_single_row).
//
// ratio is ours ÷ baseline throughput in events (one command appends one event).
func benchAppend(ctx context.Context, e env, cfg config.Config, log *slog.Logger, o benchOptions) ([]bench.Result, error) {
	scratchURL, pool, done, err := benchDatabase(ctx, log, cfg, o, o.Concurrency+4)
	if err != nil {
		return nil, err
	}
	defer done()

	load := func(label string) bench.Load {
		return bench.Load{Concurrency: o.Concurrency, Warmup: o.Warmup, Duration: o.Duration, MaxOps: o.MaxOps, Progress: e.stderr, Label: label}
	}

	// Baseline first: a cold table, as the event store's tables are for theirs.
	base, err := benchBaselineInserts(ctx, pool, load("insert_single_row"))
	if err != nil {
		return nil, err
	}

	batched, err := benchStoreAppends(ctx, pool, load("store_batched"), "store_batched", appendBatchSize)
	if err != nil {
		return nil, err
	}
	single, err := benchStoreAppends(ctx, pool, load("store_single"), "store_single", 1)
	if err != nil {
		return nil, err
	}
	single.SetBaseline(bench.BaselineOf(base))
	single.AddNote("diagnostic, no target: what http_commands costs without HTTP")
	batched.SetBaseline(bench.BaselineOf(base))
	batched.AddTarget("throughput_per_s", bench.AtLeast, targetStoreEventsPerS)

	// The suite measures the PostgreSQL write path, whatever the deployment's store.
	scfg := cfg
	scfg.DatabaseURL = scratchURL
	scfg.HTTPAddr = "127.0.0.1:0"
	scfg.EventStore, scfg.Bus = config.EventStorePostgres, config.BusPostgres
	httpRes, err := benchHTTPCommands(ctx, scfg, log, load("http_commands"), o.Concurrency)
	if err != nil {
		return nil, err
	}
	httpRes.AddNote(fmt.Sprintf("every result uses a pool of %d connections (pool_max_conns, unless MEDIAMESH_DATABASE_URL sets it)", o.Concurrency+4))
	httpRes.SetBaseline(bench.BaselineOf(base))
	httpRes.AddTarget("throughput_per_s", bench.AtLeast, targetHTTPCommandsPerS)
	httpRes.AddTarget("p99_ms", bench.AtMost, targetHTTPCommandsP99)

	base.AddNote("baseline of http_commands, store_batched and store_single: one INSERT (autocommit) per event of the same payload into a plain table")
	return []bench.Result{httpRes, batched, single, base}, nil
}

// benchPayload is the event every append-path measurement writes.
func benchPayload(i int) (events.Envelope, error) {
	data, err := json.Marshal(events.ProgramCreated{
		ProgramID:   "00000000-0000-7000-8000-000000000000",
		Title:       fmt.Sprintf("Benchmark program %d", i),
		Description: "A program created by mediamesh bench append.",
		Category:    "documentary",
		Language:    "en",
		Tags:        []string{"bench", "nature"},
	})
	if err != nil {
		return events.Envelope{}, err
	}
	return events.Envelope{
		Type:       events.TypeProgramCreated,
		OccurredAt: time.Now().UTC(),
		Metadata:   events.Metadata{Actor: "bench", CorrelationID: "bench"},
		Data:       data,
	}, nil
}

func benchBaselineInserts(ctx context.Context, pool *pgxpool.Pool, l bench.Load) (bench.Result, error) {
	if _, err := pool.Exec(ctx, `CREATE TABLE bench_baseline (
		event_id uuid PRIMARY KEY, stream_id text NOT NULL, version bigint NOT NULL, type text NOT NULL,
		data json, metadata jsonb NOT NULL, occurred_at timestamptz NOT NULL)`); err != nil {
		return bench.Result{}, fmt.Errorf("create baseline table: %w", err)
	}
	ev, err := benchPayload(0)
	if err != nil {
		return bench.Result{}, err
	}
	meta, err := json.Marshal(ev.Metadata)
	if err != nil {
		return bench.Result{}, err
	}
	s := bench.Run(ctx, l, func(ctx context.Context, w int) (int, error) {
		id := newUUID()
		_, err := pool.Exec(ctx, `INSERT INTO bench_baseline (event_id, stream_id, version, type, data, metadata, occurred_at)
			VALUES ($1, $2, 1, $3, $4, $5, $6)`, id, "program-"+id, ev.Type, string(ev.Data), string(meta), time.Now())
		return 1, err
	})
	return bench.Measure("insert_single_row", "events", s), nil
}

// benchStoreAppends measures raw event-store appends of size events each, every one
// to a new stream.
func benchStoreAppends(ctx context.Context, pool *pgxpool.Pool, l bench.Load, name string, size int) (bench.Result, error) {
	store := pgstore.New(pool)
	batch := make([]events.Envelope, size)
	for i := range batch {
		ev, err := benchPayload(i)
		if err != nil {
			return bench.Result{}, err
		}
		batch[i] = ev
	}
	s := bench.Run(ctx, l, func(ctx context.Context, w int) (int, error) {
		// Fresh envelopes each time: the store fills in EventID (a new UUIDv7).
		evs := make([]events.Envelope, len(batch))
		copy(evs, batch)
		_, err := store.Append(ctx, events.ProgramStreamID(newUUID()), events.ExpectNoStream, evs)
		return len(evs), err
	})
	r := bench.Measure(name, "events", s)
	r.AddNote(fmt.Sprintf("appends of %d event(s) to a new stream each; latency is per append", size))
	return r, nil
}

func benchHTTPCommands(ctx context.Context, cfg config.Config, log *slog.Logger, l bench.Load, concurrency int) (bench.Result, error) {
	quiet := slog.New(slog.NewJSONHandler(io.Discard, nil)) // the server's request logs would drown the progress lines
	srv, err := startServer(ctx, cfg, quiet, "command")
	if err != nil {
		return bench.Result{}, err
	}
	defer srv.stop()
	log.Info("bench server started", "url", srv.baseURL)

	signer, err := newSigner(cfg)
	if err != nil {
		return bench.Result{}, err
	}
	token, err := signer.Mint("bench", "editor", tokenTTLForTools)
	if err != nil {
		return bench.Result{}, err
	}
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        concurrency,
			MaxIdleConnsPerHost: concurrency,
			MaxConnsPerHost:     concurrency,
			IdleConnTimeout:     time.Minute,
		},
	}
	defer client.CloseIdleConnections()
	seq := make([]int, concurrency)
	s := bench.Run(ctx, l, func(ctx context.Context, w int) (int, error) {
		seq[w]++
		body := fmt.Sprintf(`{"title":"Benchmark program %d-%d","description":"Created by mediamesh bench append.","category":"documentary","language":"en","tags":["bench"]}`, w, seq[w])
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.baseURL+"/v1/programs", bytes.NewBufferString(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return 0, fmt.Errorf("POST /v1/programs: %d %s", resp.StatusCode, b)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return 1, err
	})
	r := bench.Measure("http_commands", "commands", s)
	r.AddNote("POST /v1/programs on new programs through the HTTP API (in-process server, loopback, keep-alive clients on the same cores)")
	return r, nil
}
