package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mediamesh/mediamesh/command/ingest"
	"github.com/mediamesh/mediamesh/infra/postgres"
	"github.com/mediamesh/mediamesh/infra/postgres/pgtest"
)

func newJobs(t *testing.T) (*postgres.IngestJobs, string) {
	t.Helper()
	pool, _ := pgtest.NewDB(t)
	s := postgres.NewIngestJobs(pool)
	id := uuid.Must(uuid.NewV7()).String()
	if err := s.CreateJob(context.Background(), ingest.NewJob{ID: id, Actor: "editor-1", ContentType: "application/x-ndjson", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return s, id
}

func TestIngestJobsCountsExactlyUnderRedelivery(t *testing.T) {
	t.Parallel()
	s, job := newJobs(t)
	ctx := context.Background()
	rejected := []ingest.ItemOutcome{{Index: 1, Line: 2, ExternalID: "b", Message: "title: must not be empty"}}
	if err := s.RecordSubmission(ctx, job, ingest.Progress{Items: 5, Enqueued: 4, Rejected: 1, Done: true}, rejected); err != nil {
		t.Fatal(err)
	}
	outcome := func(i int, ok bool) ingest.ItemOutcome {
		o := ingest.ItemOutcome{JobID: job, Index: i, Line: int64(i + 1), ExternalID: fmt.Sprint("x", i), OK: ok}
		if !ok {
			o.Message = "archived"
		}
		return o
	}
	// Every outcome is recorded three times, concurrently, as redeliveries would;
	// a second outcome for an item (even a different one) is ignored.
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.RecordOutcomes(ctx, []ingest.ItemOutcome{outcome(0, true), outcome(2, true), outcome(3, false)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := s.RecordOutcomes(ctx, []ingest.ItemOutcome{outcome(3, true)}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.GetJob(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Items != 5 || rec.Enqueued != 4 || rec.Rejected != 1 || !rec.Done || rec.Applied != 3 || rec.Succeeded != 2 || rec.ApplyFailed != 1 {
		t.Fatalf("record %+v", rec)
	}
	want := []ingest.ItemError{{Line: 2, ExternalID: "b", Message: "title: must not be empty"}, {Line: 4, ExternalID: "x3", Message: "archived"}}
	if fmt.Sprint(rec.Errors) != fmt.Sprint(want) {
		t.Fatalf("errors %+v, want %+v", rec.Errors, want)
	}
	if rec.LastOutcomeAt.IsZero() || rec.Actor != "editor-1" {
		t.Fatalf("record %+v", rec)
	}
}

func TestIngestJobsKeepsTheFirstErrors(t *testing.T) {
	t.Parallel()
	s, job := newJobs(t)
	ctx := context.Background()
	var fails []ingest.ItemOutcome
	for i := range ingest.MaxErrors + 50 {
		fails = append(fails, ingest.ItemOutcome{JobID: job, Index: i, Line: int64(i + 1), Message: "bad"})
	}
	if err := s.RecordOutcomes(ctx, fails); err != nil {
		t.Fatal(err)
	}
	rec, err := s.GetJob(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ApplyFailed != ingest.MaxErrors+50 || len(rec.Errors) != ingest.MaxErrors || rec.Errors[0].Line != 1 || rec.Errors[ingest.MaxErrors-1].Line != ingest.MaxErrors {
		t.Fatalf("failed %d, %d errors from line %d", rec.ApplyFailed, len(rec.Errors), rec.Errors[0].Line)
	}
}

func TestIngestJobsFeedErrorAndMissingJob(t *testing.T) {
	t.Parallel()
	s, job := newJobs(t)
	ctx := context.Background()
	p := ingest.Progress{Items: 2, Enqueued: 2, Done: true, FeedError: &ingest.ItemError{Line: 3, Message: "not closed"}}
	if err := s.RecordSubmission(ctx, job, p, nil); err != nil {
		t.Fatal(err)
	}
	rec, err := s.GetJob(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if rec.FeedError == nil || *rec.FeedError != *p.FeedError {
		t.Fatalf("feed error %+v, want %+v", rec.FeedError, p.FeedError)
	}
	other := uuid.Must(uuid.NewV7()).String()
	if _, err := s.GetJob(ctx, other); !errors.Is(err, ingest.ErrJobNotFound) {
		t.Fatalf("missing job: %v", err)
	}
	if err := s.RecordSubmission(ctx, other, p, nil); !errors.Is(err, ingest.ErrJobNotFound) {
		t.Fatalf("progress of a missing job: %v", err)
	}
}

// TestIngestJobsStoresHostileText: feeds bring any bytes; an outcome that cannot be
// stored would block the queue, so NUL bytes and invalid UTF-8 are replaced.
func TestIngestJobsStoresHostileText(t *testing.T) {
	t.Parallel()
	s, job := newJobs(t)
	ctx := context.Background()
	bad := ingest.ItemOutcome{Index: 0, Line: 1, ExternalID: "a\x00b\xff", Message: "title \x00 bad"}
	if err := s.RecordSubmission(ctx, job, ingest.Progress{Items: 1, Rejected: 1, Done: true, FeedError: &ingest.ItemError{Message: "x\x00"}}, []ingest.ItemOutcome{bad}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordOutcomes(ctx, []ingest.ItemOutcome{{JobID: job, Index: 1, ExternalID: "\x00", Message: "\xfe"}}); err != nil {
		t.Fatal(err)
	}
	rec, err := s.GetJob(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Errors) != 2 || rec.Errors[0].ExternalID != "a\uFFFDb\uFFFD" || rec.Errors[1].Message != "\uFFFD" || rec.FeedError.Message != "x\uFFFD" {
		t.Fatalf("record %+v", rec)
	}
}
