package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/mediamesh/mediamesh/command/app"
	"github.com/mediamesh/mediamesh/command/feed"
	"github.com/mediamesh/mediamesh/command/ingest"
	"github.com/mediamesh/mediamesh/events"
	bussql "github.com/mediamesh/mediamesh/infra/bus/sql"
)

func (e *env) jobCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM ingest_jobs`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIngestRefusedBeforeAJob: what is wrong from the feed's first bytes is refused
// with an error the HTTP layer maps to 4xx, and no job is recorded.
func TestIngestRefusedBeforeAJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{MaxFeedBytes: 64})
	tests := []struct {
		name, contentType, body string
		want                    error
	}{
		{"wrong content type", "text/plain", okLine, ingest.ErrUnsupportedContentType},
		{"not UTF-8", "application/json; charset=iso-8859-1", "[]", ingest.ErrUnsupportedContentType},
		{"CSV with a missing column", "text/csv", "program_external_id,program_title\n", ingest.ErrInvalidFeed},
		{"JSON that is not an array", "application/json", `{"external_id":"x"}`, ingest.ErrInvalidFeed},
		{"empty JSON", "application/json", "", ingest.ErrInvalidFeed},
		{"too large before the first item", "text/csv", strings.Repeat("x", 100), ingest.ErrFeedTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := e.svc.Submit(context.Background(), tc.contentType, strings.NewReader(tc.body), "feed-bot")
			if !errors.Is(err, tc.want) || id != "" {
				t.Fatalf("Submit = %q, %v; want no job and %v", id, err, tc.want)
			}
		})
	}
	if n := e.jobCount(t); n != 0 {
		t.Fatalf("%d jobs recorded for refused feeds", n)
	}
}

const okLine = `{"external_id":"p1","title":"Show","category":"news","language":"en"}`

func line(ext string) string { return strings.Replace(okLine, "p1", ext, 1) }

// TestIngestFeedBreaksOff: a feed that breaks off after its job exists fails the
// job, and the items before the break are still applied and counted.
func TestIngestFeedBreaksOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{MaxFeedBytes: 4096})
	e.startWorker(t)
	fit := 4096 / len(line("c1")+"\n") // whole lines within the limit
	tests := []struct {
		name, contentType string
		body              io.Reader
		submitErr         error // nil: the job tells the whole story
		succeeded         int
		failed            int
		errLine           int64
		errMsg            string
	}{
		{"JSON array that never closes", "application/json", strings.NewReader("[" + line("a1") + "," + line("a2") + ",{\"external_id\":"),
			nil, 2, 0, 3, "not closed"},
		{"malformed JSON array", "application/json", strings.NewReader("[" + line("b1") + "," + line("b2") + " x]"),
			nil, 2, 0, 3, "invalid JSON"},
		{"too large", "application/x-ndjson", strings.NewReader(strings.Repeat(line("c1")+"\n", 100)),
			ingest.ErrFeedTooLarge, fit, 0, int64(fit + 1), "larger than 4096 bytes"},
		{"upload interrupted", "application/x-ndjson", io.MultiReader(strings.NewReader(line("d1")+"\n"+line("d2")+"\n"), errReader{errors.New("connection reset")}),
			errors.New("any"), 2, 0, 3, "reading the upload failed"},
		{"CSV broken by a syntax error", "text/csv", strings.NewReader(strings.Join(feed.CSVColumns, ",") + "\n" +
			"e1,T,,news,en,,,,,,,,,\ne2,T,,news,en,,,,,,,,,\ne2,T\"x,,news,en,,,,,,,,,\n"),
			nil, 1, 1, 4, "invalid CSV"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := e.svc.Submit(context.Background(), tc.contentType, tc.body, "feed-bot")
			switch {
			case id == "":
				t.Fatalf("no job: %v", err)
			case tc.submitErr == nil && err != nil:
				t.Fatalf("Submit: %v", err)
			case tc.submitErr != nil && err == nil:
				t.Fatal("Submit reported no error")
			case errors.Is(tc.submitErr, ingest.ErrFeedTooLarge) && !errors.Is(err, ingest.ErrFeedTooLarge):
				t.Fatalf("Submit: %v, want ErrFeedTooLarge", err)
			}
			j := e.waitJob(t, id, done)
			if j.Status != ingest.StatusFailed || j.Succeeded != tc.succeeded || j.Failed != tc.failed || !strings.Contains(j.Error, tc.errMsg) {
				t.Fatalf("job %s, want failed with %d succeeded, %d failed, error %q", summary(j), tc.succeeded, tc.failed, tc.errMsg)
			}
			last := j.Errors[len(j.Errors)-1]
			if last.Line != tc.errLine || last.ExternalID != "" || last.Message != j.Error {
				t.Fatalf("errors %+v: want the feed's error last, at line %d", j.Errors, tc.errLine)
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// hugeLine is an NDJSON feed with a 1 GB line between two valid ones, generated on
// the fly.
type hugeLine struct {
	head, tail string
	left       int64
	block      []byte
}

func (h *hugeLine) Read(p []byte) (int, error) {
	switch {
	case h.head != "":
		n := copy(p, h.head)
		h.head = h.head[n:]
		return n, nil
	case h.left > 0:
		n := copy(p, h.block[:min(int64(len(h.block)), h.left)])
		h.left -= int64(n)
		return n, nil
	case h.tail != "":
		n := copy(p, h.tail)
		h.tail = h.tail[n:]
		return n, nil
	}
	return 0, io.EOF
}

// TestIngestHugeLine: a 1 GB NDJSON line fails alone; the lines around it are
// applied.
func TestIngestHugeLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{MaxFeedBytes: 2 << 30})
	e.startWorker(t)
	body := &hugeLine{
		head:  line("h1") + "\n" + `{"external_id":"huge","title":"`,
		left:  1 << 30,
		block: bytes.Repeat([]byte("a"), 64<<10),
		tail:  `","category":"news","language":"en"}` + "\n" + line("h2") + "\n",
	}
	id, err := e.svc.Submit(context.Background(), "application/x-ndjson", body, "feed-bot")
	if err != nil {
		t.Fatal(err)
	}
	j := e.waitJob(t, id, done)
	if j.Status != ingest.StatusCompletedWithErrors || j.Total != 3 || j.Succeeded != 2 || j.Failed != 1 ||
		j.Errors[0].Line != 2 || !strings.Contains(j.Errors[0].Message, "longer than") {
		t.Fatalf("job %+v", j)
	}
}

// TestIngestItemsTheAggregateRefuses: items the rules refuse in the worker fail
// alone, with the rule's message, and the others go on.
func TestIngestItemsTheAggregateRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{})
	e.startWorker(t)
	progs := catalog(10, 2)
	body, _ := encodeNDJSON(t, progs, nil)
	e.waitJob(t, e.submit(t, "application/x-ndjson", body), done)

	id3 := e.programID(t, progs[3].ExternalID)
	id4 := e.programID(t, progs[4].ExternalID)
	h := app.NewHandlers(e.store)
	if _, err := h.ArchiveProgram.Handle(context.Background(), app.ArchiveProgram{Meta: app.Meta{Actor: "editor"}, ProgramID: id3}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.AddEpisode.Handle(context.Background(), app.AddEpisode{Meta: app.Meta{Actor: "editor"}, ProgramID: id4, Title: "By hand", Number: 9, Season: 1, DurationSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	progs[3].Title = "Changed while archived"
	progs[4].Episodes = append(progs[4].Episodes, feed.Episode{ExternalID: "new", Title: "Clash", Number: 9, Season: ptr(1), DurationSeconds: 60})
	body, _ = encodeNDJSON(t, progs, nil)
	j := e.waitJob(t, e.submit(t, "application/x-ndjson", body), done)
	if j.Status != ingest.StatusCompletedWithErrors || j.Succeeded != 8 || j.Failed != 2 || len(j.Errors) != 2 {
		t.Fatalf("job %+v", j)
	}
	if e0 := j.Errors[0]; e0.ExternalID != progs[3].ExternalID || !strings.Contains(e0.Message, "archived") {
		t.Errorf("first error %+v, want the archived program", e0)
	}
	if e1 := j.Errors[1]; e1.ExternalID != progs[4].ExternalID || !strings.Contains(e1.Message, "already has episode number 9") {
		t.Errorf("second error %+v, want the duplicate number", e1)
	}
}

// programID resolves an external id through its pointer stream.
func (e *env) programID(t *testing.T, externalID string) string {
	t.Helper()
	envs, err := e.store.ReadStream(context.Background(), events.ProgramExternalIDStreamID(externalID))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.NewCodec().DecodeEnvelope(envs[0])
	if err != nil {
		t.Fatal(err)
	}
	return ev.(events.ProgramExternalIDRegistered).ProgramID
}

// flakyStore fails the appends that fail says to fail.
type flakyStore struct {
	app.EventStore
	fail func(streamID string) bool
}

var errFlaky = errors.New("store unavailable")

func (s flakyStore) Append(ctx context.Context, streamID string, expected int64, evs []events.Envelope) (events.AppendResult, error) {
	if s.fail(streamID) {
		return events.AppendResult{}, errFlaky
	}
	return s.EventStore.Append(ctx, streamID, expected, evs)
}

// TestIngestStoreFailures: an item that fails for a reason other than itself is
// delivered again until it succeeds, or recorded as failed after MaxAttempts; the
// counts stay exact either way.
func TestIngestStoreFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{MaxAttempts: 3})
	var mu sync.Mutex
	calls := map[string]int{}
	var failures atomic.Int64
	doomed := events.ProgramExternalIDStreamID("acme:show:0007")
	store := flakyStore{EventStore: e.store, fail: func(streamID string) bool {
		mu.Lock()
		defer mu.Unlock()
		calls[streamID]++
		// Every pointer's first append fails once; one external id never works.
		if streamID == doomed || calls[streamID] == 1 && strings.HasPrefix(streamID, "programext-") {
			failures.Add(1)
			return true
		}
		return false
	}}
	sub, err := newSubscriber(e)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ingest.NewWorker(e.jobs, sub, store, quiet(ingest.Config{MaxAttempts: 3}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = w.Run(ctx); close(stopped) }()
	t.Cleanup(func() { cancel(); <-stopped; _ = sub.Close() })

	progs := catalog(20, 1)
	body, _ := encodeNDJSON(t, progs, nil)
	j := e.waitJob(t, e.submit(t, "application/x-ndjson", body), done)
	if j.Succeeded != 19 || j.Failed != 1 || j.Errors[0].ExternalID != "acme:show:0007" || !strings.Contains(j.Errors[0].Message, "not applied after 3 attempts") {
		t.Fatalf("job %+v", j)
	}
	if got := e.eventCounts(t)[events.TypeProgramCreated]; got != 19 {
		t.Fatalf("%d programs created, want 19", got)
	}
	if failures.Load() < 20 {
		t.Fatalf("only %d injected failures: the test did not exercise redelivery", failures.Load())
	}
}

// TestIngestPoisonMessage: a message no job can be found for is dropped, and the
// queue goes on.
func TestIngestPoisonMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, ingest.Config{})
	pub, err := bussql.NewPublisher(e.pool, e.bus)
	if err != nil {
		t.Fatal(err)
	}
	poison := message.NewMessage("poison", []byte("not an item"))
	poison.Metadata.Set(ingest.PartitionKeyMetadata, "p1")
	if err := pub.Publish(ingest.Topic, poison); err != nil {
		t.Fatal(err)
	}
	e.startWorker(t)
	j := e.waitJob(t, e.submit(t, "application/x-ndjson", []byte(okLine+"\n")), done)
	if j.Status != ingest.StatusCompleted || j.Succeeded != 1 {
		t.Fatalf("job %s", summary(j))
	}
}
