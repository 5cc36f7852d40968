package projectiontest

import (
	"context"
	"sort"
	"sync"

	"github.com/mediamesh/mediamesh/events"
)

// Source is an in-memory global log with the event store's reading contract:
// ReadAll and Subscribe return events above a position in ascending order, and
// Subscribe blocks for new appends.
type Source struct {
	mu      sync.Mutex
	evs     []events.Envelope
	changed chan struct{}
}

// NewSource returns a log holding evs (ascending positions).
func NewSource(evs ...events.Envelope) *Source {
	s := &Source{changed: make(chan struct{})}
	s.Append(evs...)
	return s
}

// Append adds events whose positions are above every stored one.
func (s *Source) Append(evs ...events.Envelope) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range evs {
		if n := len(s.evs); n > 0 && e.Position <= s.evs[n-1].Position {
			panic("projectiontest.Source: positions must ascend")
		}
		s.evs = append(s.evs, e)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Source) read(after int64, limit int) ([]events.Envelope, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.evs), func(i int) bool { return s.evs[i].Position > after })
	j := min(len(s.evs), i+limit)
	return append([]events.Envelope(nil), s.evs[i:j]...), s.changed
}

// ReadAll implements runtime.Source.
func (s *Source) ReadAll(ctx context.Context, after int64, limit int) ([]events.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	evs, _ := s.read(after, limit)
	return evs, nil
}

// HeadPosition implements runtime.Source.
func (s *Source) HeadPosition(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.evs) == 0 {
		return 0, ctx.Err()
	}
	return s.evs[len(s.evs)-1].Position, ctx.Err()
}

// Subscribe implements runtime.Source.
func (s *Source) Subscribe(ctx context.Context, after int64, batchSize int, handle func(context.Context, []events.Envelope) error) error {
	for {
		batch, changed := s.read(after, batchSize)
		if len(batch) == 0 {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := handle(ctx, batch); err != nil {
			return err
		}
		after = batch[len(batch)-1].Position
	}
}
