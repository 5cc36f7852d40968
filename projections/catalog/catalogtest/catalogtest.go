// Package catalogtest generates large, valid catalog histories quickly and
// deterministically, for end-to-end tests, crash tests and `mediamesh bench`: the
// program streams only (episode pointer streams carry nothing the read models use),
// as per-program lives to append to an event store, or interleaved with global
// positions to feed a projection or a topic directly.
package catalogtest

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/mediamesh/mediamesh/events"
)

// Base is the occurred_at of the first generated event.
var Base = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	categories = []string{"drama", "comedy", "news", "sport", "kids", "documentary", "music", "film"}
	languages  = []string{"en", "en-GB", "sv", "de", "fr", "es"}
	tagPool    = []string{"crime", "nordic", "live", "family", "classic", "new", "award", "series", "short", "true-story"}
	words      = []string{"Night", "Shift", "Blue", "River", "North", "Signal", "Harbor", "Glass", "Winter", "Echo", "Stone", "Garden"}
)

// Program is the generated life of one program: its stream's events in order,
// with EventID, Type, StreamID, Version, OccurredAt, Metadata and Data set and
// Position left 0 (an event store assigns it; see Interleave otherwise).
type Program struct {
	ID     string
	Events []events.Envelope
}

// Generate returns programs whose lives add up to at least n events: each is
// created, and then edited, published and unpublished, given episodes that are
// edited and published, and now and then archived (about 20 events on average).
// The same seed gives the same programs.
func Generate(seed uint64, n int) []Program {
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	codec := events.NewCodec()
	var out []Program
	total := 0
	for i := 0; total < n; i++ {
		g := &gen{rng: rng, codec: codec, id: uuidOf(seed, 0x70, uint64(i)), seed: seed, index: i}
		g.life(min(n-total, 5+rng.IntN(31)))
		out = append(out, Program{ID: g.id, Events: g.out})
		total += len(g.out)
	}
	return out
}

// Count returns the number of events of progs.
func Count(progs []Program) int {
	n := 0
	for _, p := range progs {
		n += len(p.Events)
	}
	return n
}

// Interleave returns every event of progs in one random order that keeps each
// program's own order, with global positions ascending from 1<<20 with gaps (as
// the PostgreSQL event store's positions are) and OccurredAt a millisecond apart.
func Interleave(seed uint64, progs []Program) []events.Envelope {
	rng := rand.New(rand.NewPCG(seed, 77))
	next := make([]int, len(progs))
	live := make([]int, 0, len(progs))
	for i, p := range progs {
		if len(p.Events) > 0 {
			live = append(live, i)
		}
	}
	out := make([]events.Envelope, 0, Count(progs))
	pos := int64(1 << 20)
	for len(live) > 0 {
		k := rng.IntN(len(live))
		i := live[k]
		e := progs[i].Events[next[i]]
		next[i]++
		if next[i] == len(progs[i].Events) {
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
		}
		pos += 1 + int64(rng.IntN(2))<<20
		e.Position = pos
		e.OccurredAt = Base.Add(time.Duration(len(out)) * time.Millisecond)
		out = append(out, e)
	}
	return out
}

// uuidOf is a deterministic UUID (version 7 layout) from a seed, a kind and a
// number.
func uuidOf(seed uint64, kind byte, n uint64) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], seed<<8|uint64(kind))
	binary.BigEndian.PutUint64(b[8:], n)
	b[6] = 0x70 | b[6]&0x0f
	b[8] = 0x80 | b[8]&0x3f
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

type episode struct {
	id        string
	status    string
	number    int
	published bool
}

type gen struct {
	rng         *rand.Rand
	codec       *events.Codec
	id          string
	seed        uint64
	index       int
	status      string
	episodes    []*episode
	nextNumber  int
	out         []events.Envelope
	eventNumber uint64
}

func (g *gen) emit(ev events.Event) {
	typ, data, err := g.codec.Encode(ev)
	if err != nil {
		panic(err) // generated events always encode
	}
	g.eventNumber++
	v := int64(len(g.out) + 1)
	g.out = append(g.out, events.Envelope{
		EventID:    uuidOf(g.seed, 0xe0, uint64(g.index)<<20|g.eventNumber),
		Type:       typ,
		StreamID:   events.ProgramStreamID(g.id),
		Version:    v,
		OccurredAt: Base.Add(time.Duration(g.index)*time.Second + time.Duration(v)*time.Millisecond),
		Metadata:   events.Metadata{Actor: "catalogtest"},
		Data:       data,
	})
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func (g *gen) tags() []string {
	out := []string{}
	for _, t := range tagPool {
		if g.rng.IntN(4) == 0 {
			out = append(out, t)
		}
	}
	return out
}

func (g *gen) title() string {
	return fmt.Sprintf("%s %s %d", pick(g.rng, words), pick(g.rng, words), g.index)
}

func ptr[T any](v T) *T { return &v }

// life emits up to n events of one program.
func (g *gen) life(n int) {
	g.status = "draft"
	g.emit(events.ProgramCreated{ProgramID: g.id, Title: g.title(), Description: "About " + g.title(),
		Category: pick(g.rng, categories), Language: pick(g.rng, languages), Tags: g.tags()})
	for len(g.out) < n && g.status != "archived" {
		g.step()
	}
}

func (g *gen) step() {
	switch r := g.rng.IntN(100); {
	case r < 12:
		u := events.ProgramUpdated{ProgramID: g.id}
		if g.rng.IntN(2) == 0 {
			u.Title = ptr(g.title())
		}
		if g.rng.IntN(3) == 0 {
			u.Description = ptr("Now about " + g.title())
		}
		if g.rng.IntN(4) == 0 {
			u.Category = ptr(pick(g.rng, categories))
		}
		if g.rng.IntN(5) == 0 {
			u.Language = ptr(pick(g.rng, languages))
		}
		if g.rng.IntN(4) == 0 {
			u.Tags = ptr(g.tags())
		}
		g.emit(u)
	case r < 24:
		if g.status == "published" {
			g.status = "unpublished"
			g.emit(events.ProgramUnpublished{ProgramID: g.id})
		} else {
			g.status = "published"
			g.emit(events.ProgramPublished{ProgramID: g.id})
		}
	case r < 25:
		g.status = "archived"
		g.emit(events.ProgramArchived{ProgramID: g.id})
	case r < 55 || len(g.episodes) == 0:
		g.nextNumber++
		e := &episode{id: uuidOf(g.seed, 0xe9, uint64(g.index)<<16|uint64(g.nextNumber)), status: "draft", number: g.nextNumber}
		g.episodes = append(g.episodes, e)
		g.emit(events.EpisodeAdded{ProgramID: g.id, EpisodeID: e.id, Title: fmt.Sprintf("Episode %d", e.number), Number: e.number,
			Season: 1 + g.rng.IntN(3), Description: "Part " + fmt.Sprint(e.number), DurationSeconds: 60 + g.rng.IntN(3600)})
	default:
		live := slices.DeleteFunc(slices.Clone(g.episodes), func(e *episode) bool { return e.status == "archived" })
		if len(live) == 0 {
			return
		}
		e := pick(g.rng, live)
		switch g.rng.IntN(6) {
		case 0:
			g.emit(events.EpisodeUpdated{ProgramID: g.id, EpisodeID: e.id, Title: ptr(fmt.Sprintf("Episode %d: %s", e.number, pick(g.rng, words))),
				DurationSeconds: ptr(60 + g.rng.IntN(3600))})
		case 1:
			if e.status == "published" {
				e.status = "unpublished"
				g.emit(events.EpisodeUnpublished{ProgramID: g.id, EpisodeID: e.id})
			}
		case 2:
			if g.rng.IntN(4) == 0 {
				e.status = "archived"
				g.emit(events.EpisodeArchived{ProgramID: g.id, EpisodeID: e.id})
			}
		default:
			if e.status != "published" {
				e.status = "published"
				g.emit(events.EpisodePublished{ProgramID: g.id, EpisodeID: e.id})
			}
		}
	}
}
