package main

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// TestCMSWaitForIsExact: a consistency token on the editorial list waits until
// the program's row holds the write's version, not merely until the projection's
// checkpoint passed the write's position: under Kafka the checkpoint can pass it
// while the write's own partition has not been applied yet.
func TestCMSWaitForIsExact(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewDB(t)
	ctx := context.Background()
	const id = "0190d5a0-0000-7000-8000-000000000001"
	if _, err := pool.Exec(ctx, `INSERT INTO editorial_programs_v1 (id, title, category, language, status, created_at, updated_at, version)
		VALUES ($1, 'Old', 'drama', 'en', 'draft', now(), now(), 1)`, id); err != nil {
		t.Fatal(err)
	}
	// Another partition's later event was applied: the checkpoint is past the write.
	if _, err := pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, version, position, serving) VALUES ('editorial', 1, 1000, true)`); err != nil {
		t.Fatal(err)
	}
	c := &cmsPrograms{pool: pool}
	if err := c.use(1); err != nil {
		t.Fatal(err)
	}
	w, err := runtime.NewWaiter(pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = w.Run(wctx) }()
	c.waiter = w

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = c.WaitFor(short, events.ProgramStreamID(id), 2, 500)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor a version the row does not hold yet: %v, want a deadline", err)
	}

	// The write's partition is applied (row at version 2, next commit announced):
	// the waiter wakes without polling.
	done := make(chan error, 1)
	go func() {
		wait, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		done <- c.WaitFor(wait, events.ProgramStreamID(id), 2, 500)
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := pool.Exec(ctx, `UPDATE editorial_programs_v1 SET version = 2 WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE projection_checkpoints SET position = 1001 WHERE name = 'editorial'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_notify($1, '{"name":"editorial","version":1,"position":1001,"serving":true}')`, runtime.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("WaitFor after the write was applied: %v", err)
	}
	// A write to another stream waits for its position only.
	if err := c.WaitFor(ctx, "programext-abc", 1, 900); err != nil {
		t.Fatalf("WaitFor a pointer stream's write below the checkpoint: %v", err)
	}
}
