package ingest

import (
	"fmt"
	"testing"
	"time"
)

func TestJobStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fresh := now.Add(-time.Second)
	stale := now.Add(-time.Hour)
	feedErr := &ItemError{Line: 7, Message: "not closed"}
	tests := []struct {
		name       string
		rec        JobRecord
		want       Status
		done       bool
		errorLines []int64
	}{
		{"nothing read yet", JobRecord{UpdatedAt: fresh}, StatusQueued, false, nil},
		{"items enqueued, none applied", JobRecord{Progress: Progress{Items: 5, Enqueued: 5}, UpdatedAt: fresh}, StatusQueued, false, nil},
		{"some applied while uploading", JobRecord{Progress: Progress{Items: 5, Enqueued: 5}, UpdatedAt: fresh, Applied: 2, Succeeded: 2}, StatusRunning, false, nil},
		{"all applied but the upload goes on", JobRecord{Progress: Progress{Items: 5, Enqueued: 5}, UpdatedAt: fresh, Applied: 5, Succeeded: 5}, StatusRunning, false, nil},
		{"completed", JobRecord{Progress: Progress{Items: 5, Enqueued: 5, Done: true}, UpdatedAt: stale, Applied: 5, Succeeded: 5}, StatusCompleted, true, nil},
		{"completed with rejected items", JobRecord{Progress: Progress{Items: 6, Enqueued: 5, Rejected: 1, Done: true}, UpdatedAt: fresh, Applied: 5, Succeeded: 5,
			Errors: []ItemError{{Line: 3}}}, StatusCompletedWithErrors, true, []int64{3}},
		{"completed with failed items", JobRecord{Progress: Progress{Items: 5, Enqueued: 5, Done: true}, UpdatedAt: fresh, Applied: 5, Succeeded: 4, ApplyFailed: 1}, StatusCompletedWithErrors, true, nil},
		{"empty feed", JobRecord{Progress: Progress{Done: true}, UpdatedAt: fresh}, StatusCompleted, true, nil},
		{"feed broke off, items still running", JobRecord{Progress: Progress{Items: 3, Enqueued: 3, Done: true, FeedError: feedErr}, UpdatedAt: fresh, Applied: 1, Succeeded: 1,
			Errors: []ItemError{{Line: 2}, {Line: 9}}}, StatusFailed, false, []int64{2, 7, 9}},
		{"feed broke off, all applied", JobRecord{Progress: Progress{Items: 3, Enqueued: 3, Done: true, FeedError: feedErr}, UpdatedAt: fresh, Applied: 3, Succeeded: 3}, StatusFailed, true, []int64{7}},
		{"submission died", JobRecord{Progress: Progress{Items: 3, Enqueued: 3}, UpdatedAt: stale, Applied: 3, Succeeded: 3}, StatusFailed, true, []int64{0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j := jobOf(tc.rec, now, time.Minute)
			if j.Status != tc.want || j.Done() != tc.done {
				t.Fatalf("status %s done %v, want %s %v", j.Status, j.Done(), tc.want, tc.done)
			}
			var lines []int64
			for _, e := range j.Errors {
				lines = append(lines, e.Line)
			}
			if fmt.Sprint(lines) != fmt.Sprint(tc.errorLines) && !(len(lines) == 0 && len(tc.errorLines) == 0) {
				t.Fatalf("error lines %v, want %v", lines, tc.errorLines)
			}
			if j.Errors == nil {
				t.Fatal("errors must be [] rather than null in JSON")
			}
			if j.Total != tc.rec.Items || j.Failed != tc.rec.Rejected+tc.rec.ApplyFailed {
				t.Fatalf("counts %+v", j)
			}
		})
	}
}
