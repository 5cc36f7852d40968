package relay

import (
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// item is one event on its way to the bus.
type item struct {
	position int64
	key      string
	msg      *message.Message
	eventID  string
	done     bool // guarded by tracker.mu
}

// tracker turns acknowledgements that arrive in any order (workers publish different
// keys concurrently) into a watermark: the position up to which every event read has
// been acknowledged. Only the watermark may be checkpointed.
//
// It also bounds the window between the watermark and the newest event read: slots
// has one token per event in the window, taken when an event is read and given back
// when the watermark passes it, so a slow key holds back reading (and memory) instead
// of letting the window grow without limit.
type tracker struct {
	slots chan struct{}

	mu        sync.Mutex
	window    []*item // read, in position order, not yet passed by the watermark
	watermark int64
}

func newTracker(from int64, maxInFlight int) *tracker {
	return &tracker{slots: make(chan struct{}, maxInFlight), watermark: from}
}

// add appends it, which must have a higher position than every item added before, to
// the window. The caller holds one of t's slots for it.
func (t *tracker) add(it *item) {
	t.mu.Lock()
	t.window = append(t.window, it)
	t.mu.Unlock()
}

// ack records that it was acknowledged and advances the watermark over the longest
// acknowledged prefix of the window, giving back those items' slots.
func (t *tracker) ack(it *item) {
	t.mu.Lock()
	defer t.mu.Unlock()
	it.done = true
	n := 0
	for n < len(t.window) && t.window[n].done {
		t.watermark = t.window[n].position
		t.window[n] = nil
		n++
	}
	if n == 0 {
		return
	}
	t.window = t.window[n:]
	if len(t.window) == 0 {
		t.window = nil // let the backing array go
	}
	for range n {
		<-t.slots
	}
}

// state returns the watermark and the number of events read but not yet passed by it.
func (t *tracker) state() (watermark int64, inFlight int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.watermark, len(t.window)
}
