// Package eventstoretest is the conformance suite of MediaMesh's event store port.
// Every adapter (infra/eventstore/postgres, infra/eventstore/esdb) runs Run against
// a real server, so the write side, the relay and the projections can rely on the same
// behaviour whichever store a deployment uses.
//
// The suite never assumes it owns the store: stream names carry a random suffix, and
// global reads are checked only for the events a test wrote itself (plus ordering and
// limits on everything it sees). That lets the EventStoreDB run share one server
// between tests and runs, and lets any subtest run in parallel.
package eventstoretest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/events"
)

// Store is the event store port: what every adapter implements, exactly. The write
// side's command/app.EventStore is its Append + ReadStream subset.
//
// Versions count a stream's events from 1. Positions are places in the global log:
// greater than 0, strictly increasing in the order ReadAll and Subscribe return
// events, not necessarily dense.
type Store interface {
	// Append writes evs to streamID as one atomic append. expectedVersion is
	// events.ExpectAny, events.ExpectNoStream or the stream's exact current version;
	// a mismatch returns an error wrapping events.ErrVersionConflict and writes
	// nothing. An empty EventID gets a new UUIDv7; a zero OccurredAt gets the append
	// time. Appending a batch whose event ids are already stored (a retried request)
	// writes nothing and returns the original append's result, whatever stream and
	// expected version the retry names.
	Append(ctx context.Context, streamID string, expectedVersion int64, evs []events.Envelope) (events.AppendResult, error)
	// ReadStream returns the stream's events oldest first, or an error wrapping
	// events.ErrStreamNotFound when it has none.
	ReadStream(ctx context.Context, streamID string) ([]events.Envelope, error)
	// ReadAll returns at most limit events with Position > after, in ascending
	// position order. It may trail the newest appends for as long as an older
	// concurrent append is unfinished; it never skips one.
	ReadAll(ctx context.Context, after int64, limit int) ([]events.Envelope, error)
	// Subscribe blocks and hands every event with Position > after to handle exactly
	// once, in position order, in batches of at most batchSize, including events
	// appended while it runs. It returns handle's error (wrapped) or ctx.Err().
	Subscribe(ctx context.Context, after int64, batchSize int, handle func(context.Context, []events.Envelope) error) error
	// HeadPosition is the position of the newest event a reader of the global log can
	// see, or 0 when there is none.
	HeadPosition(ctx context.Context) (int64, error)
}

// Run runs the whole suite; newStore returns the store under test for one subtest
// (a fresh one, or a shared one: the tests do not care).
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s Store)
	}{
		{"AppendReadRoundTrip", testRoundTrip},
		{"GeneratedEventIDAndTime", testGeneratedFields},
		{"ExpectedVersionConflictWritesNothing", testConflicts},
		{"ExpectAny", testExpectAny},
		{"ConcurrentAppendsOneWins", testConcurrentAppends},
		{"IdempotentRetry", testIdempotentRetry},
		{"InvalidAppendWritesNothing", testInvalidAppend},
		{"ReadMissingStream", testReadMissingStream},
		{"ReadAllOrderAndLimit", testReadAllOrderAndLimit},
		{"HeadPosition", testHeadPosition},
		{"SubscribeFromZero", testSubscribeFromZero},
		{"SubscribeFromCheckpoint", testSubscribeFromCheckpoint},
		{"SubscribeLiveAndBatchSize", testSubscribeLive},
		{"SubscribeHandlerErrorStops", testSubscribeHandlerError},
		{"SubscribeContextCancelled", testSubscribeCancel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t))
		})
	}
}

// waitTimeout bounds every wait on a condition; nothing in the suite sleeps blindly.
const waitTimeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// StreamName returns a stream name that no other test or run uses.
func StreamName(t testing.TB, kind string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random stream suffix: %v", err)
	}
	return fmt.Sprintf("mmtest%s-%s", kind, hex.EncodeToString(b[:]))
}

// NewEvents returns n envelopes with fresh UUIDv7 ids, the given type and a small
// JSON payload naming their index.
func NewEvents(t testing.TB, n int, typ string) []events.Envelope {
	t.Helper()
	out := make([]events.Envelope, n)
	for i := range out {
		out[i] = events.Envelope{
			EventID:    newID(t),
			Type:       typ,
			OccurredAt: time.Now().UTC().Truncate(time.Microsecond),
			Metadata:   events.Metadata{CorrelationID: "corr", Actor: "suite"},
			Data:       json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
		}
	}
	return out
}

func mustAppend(t *testing.T, s Store, stream string, expected int64, evs []events.Envelope) events.AppendResult {
	t.Helper()
	res, err := s.Append(testContext(t), stream, expected, evs)
	if err != nil {
		t.Fatalf("append %d events to %s (expected version %d): %v", len(evs), stream, expected, err)
	}
	return res
}

func mustRead(t *testing.T, s Store, stream string) []events.Envelope {
	t.Helper()
	got, err := s.ReadStream(testContext(t), stream)
	if err != nil {
		t.Fatalf("read stream %s: %v", stream, err)
	}
	return got
}

func mustHead(t *testing.T, s Store) int64 {
	t.Helper()
	h, err := s.HeadPosition(testContext(t))
	if err != nil {
		t.Fatalf("head position: %v", err)
	}
	return h
}

// waitReadable waits until a reader of the global log can see position pos. A store
// may let ReadAll trail an append while older transactions are open (PostgreSQL
// does, by design), so global reads in the suite first wait for this.
func waitReadable(t *testing.T, s Store, pos int64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		h := mustHead(t, s)
		if h >= pos {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("head position stayed at %d, below appended position %d, for %v", h, pos, waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// storeIsEmpty reports whether the store has no events at all (a fresh database);
// assertions that need an exclusive store run only then.
func storeIsEmpty(t *testing.T, s Store) bool {
	t.Helper()
	evs, err := s.ReadAll(testContext(t), 0, 1)
	if err != nil {
		t.Fatalf("read all: %v", err)
	}
	return len(evs) == 0
}

// readMine pages through the global log after position after with the given page
// size, checking each page's limit and order, until it has seen want events of the
// given streams; it returns those events in log order.
func readMine(t *testing.T, s Store, after int64, limit, want int, streams ...string) []events.Envelope {
	t.Helper()
	mine := map[string]bool{}
	for _, st := range streams {
		mine[st] = true
	}
	var out []events.Envelope
	last := after
	deadline := time.Now().Add(waitTimeout)
	for len(out) < want {
		page, err := s.ReadAll(testContext(t), last, limit)
		if err != nil {
			t.Fatalf("read all after %d limit %d: %v", last, limit, err)
		}
		if len(page) == 0 {
			// A store may hold back committed events while an older transaction it
			// cannot rule out is still open (the PostgreSQL adapter reads below the
			// oldest running transaction id, and a transaction of another database
			// that ends between its two looks counts as its own): wait, bounded.
			if time.Now().After(deadline) {
				t.Fatalf("read all after %d: no more events for %v, found %d of my %d", last, waitTimeout, len(out), want)
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if len(page) > limit {
			t.Fatalf("read all after %d limit %d returned %d events", last, limit, len(page))
		}
		for _, e := range page {
			if e.Position <= last {
				t.Fatalf("read all after %d returned position %d, not above the previous %d", after, e.Position, last)
			}
			last = e.Position
			if mine[e.StreamID] {
				out = append(out, e)
			}
		}
	}
	return out
}

// assertSameEvent checks that got is want as read back from the store.
func assertSameEvent(t *testing.T, got, want events.Envelope, stream string, version int64) {
	t.Helper()
	if got.EventID != want.EventID {
		t.Errorf("event id = %q, want %q", got.EventID, want.EventID)
	}
	if got.Type != want.Type {
		t.Errorf("type = %q, want %q", got.Type, want.Type)
	}
	if got.StreamID != stream {
		t.Errorf("stream id = %q, want %q", got.StreamID, stream)
	}
	if got.Version != version {
		t.Errorf("event %s version = %d, want %d", got.EventID, got.Version, version)
	}
	if got.Position <= 0 {
		t.Errorf("event %s position = %d, want > 0", got.EventID, got.Position)
	}
	wantAt := want.OccurredAt.Truncate(time.Microsecond).UTC()
	if !got.OccurredAt.Equal(wantAt) || got.OccurredAt.Location() != time.UTC {
		t.Errorf("occurred at = %v, want %v (UTC, microseconds)", got.OccurredAt, wantAt)
	}
	if got.Metadata != want.Metadata {
		t.Errorf("metadata = %+v, want %+v", got.Metadata, want.Metadata)
	}
	if string(got.Data) != string(want.Data) {
		t.Errorf("data = %q, want %q byte for byte", got.Data, want.Data)
	}
	if (got.Data == nil) != (want.Data == nil) {
		t.Errorf("data nil = %v, want %v", got.Data == nil, want.Data == nil)
	}
}
