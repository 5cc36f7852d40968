// Package projectiontest is what the projection tests share: the golden events as
// a stream, generated program streams, redelivery with duplicates, a reference fold
// of the events, an in-memory event source, and sink checksums. It is imported by
// tests only.
package projectiontest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"testing"
	"time"

	"github.com/mediamesh/mediamesh/events"
)

// Base is the occurred_at of the first generated event; later ones follow it.
var Base = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// GoldenProgramID is the program of events/testdata.
const GoldenProgramID = "0190d5a0-0000-7000-8000-000000000001"

// goldenOrder is the order the golden events are appended in: a valid life of the
// golden program (the episode pointer stream's event right before the episode).
var goldenOrder = []string{
	events.TypeProgramCreated,
	events.TypeEpisodeRegistered,
	events.TypeEpisodeAdded,
	events.TypeProgramPublished,
	events.TypeEpisodeUpdated,
	events.TypeEpisodePublished,
	events.TypeProgramUpdated,
	events.TypeEpisodeUnpublished,
	events.TypeProgramUnpublished,
	events.TypeEpisodeArchived,
	events.TypeProgramArchived,
}

// Golden returns the golden events of events/testdata as one appended history:
// positions from 1<<20 with gaps, a second apart, versions counted per stream.
func Golden(t testing.TB) []events.Envelope {
	t.Helper()
	_, file, _, _ := goruntime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "events", "testdata")
	codec := events.NewCodec()
	var out []events.Envelope
	versions := map[string]int64{}
	for i, typ := range goldenOrder {
		raw, err := os.ReadFile(filepath.Join(dir, typ+".json"))
		if err != nil {
			t.Fatalf("golden event %s: %v", typ, err)
		}
		ev, err := codec.Decode(typ, raw)
		if err != nil {
			t.Fatalf("golden event %s: %v", typ, err)
		}
		stream := events.ProgramStreamID(events.ProgramIDOf(ev))
		if r, ok := ev.(events.EpisodeRegistered); ok {
			stream = events.EpisodeStreamID(r.EpisodeID)
		}
		versions[stream]++
		out = append(out, events.Envelope{
			EventID:    fmt.Sprintf("0190d5a0-0000-7000-9000-%012x", i+1),
			Type:       typ,
			StreamID:   stream,
			Version:    versions[stream],
			Position:   int64(i+1)<<20 | 1,
			OccurredAt: Base.Add(time.Duration(i) * time.Second),
			Metadata:   events.Metadata{Actor: "golden"},
			Data:       raw,
		})
	}
	return out
}

// Categories and tags drawn by Generate; few categories so that counts move.
var (
	Categories = []string{"drama", "comedy", "news", "sport", "kids"}
	tagPool    = []string{"crime", "nordic", "live", "family", "classic", "new", "award"}
	languages  = []string{"en", "en-GB", "sv", "de", "fr"}
)

type genEpisode struct {
	id     string
	status string
}

type genProgram struct {
	id       string
	status   string
	episodes []*genEpisode
	number   int
	evs      []events.Event
}

// Generate returns the history of n programs, each a valid life of 2 to 40 events
// (episodes included, each preceded by its pointer stream's event), interleaved at
// random as concurrent writers would append them. The same seed gives the same
// events.
func Generate(seed uint64, n int) []events.Envelope {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	progs := make([]*genProgram, n)
	for i := range progs {
		p := &genProgram{id: fmt.Sprintf("0190d5a0-%04x-7000-8000-%012x", seed%0xffff, i+1), status: "draft"}
		p.evs = append(p.evs, events.ProgramCreated{
			ProgramID: p.id, Title: fmt.Sprintf("Program %d", i+1), Description: "About " + fmt.Sprint(i+1),
			Category: pick(rng, Categories), Language: pick(rng, languages), Tags: pickTags(rng),
			ExternalID: externalID(rng, i+1),
		})
		for steps := 1 + rng.IntN(40); steps > 0 && p.status != "archived"; steps-- {
			p.step(rng)
		}
		progs[i] = p
	}
	return interleave(rng, progs)
}

func externalID(rng *rand.Rand, i int) string {
	if rng.IntN(3) == 0 {
		return ""
	}
	return fmt.Sprintf("feed-%d", i)
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func pickTags(rng *rand.Rand) []string {
	var out []string
	for _, t := range tagPool {
		if rng.IntN(3) == 0 {
			out = append(out, t)
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// step appends one random, valid event of the program's aggregate.
func (p *genProgram) step(rng *rand.Rand) {
	switch r := rng.IntN(100); {
	case r < 15:
		u := events.ProgramUpdated{ProgramID: p.id}
		if rng.IntN(2) == 0 {
			u.Title = ptr(fmt.Sprintf("Title %d", rng.IntN(1000)))
		}
		if rng.IntN(3) == 0 {
			u.Description = ptr(fmt.Sprintf("Desc %d", rng.IntN(1000)))
		}
		if rng.IntN(3) == 0 {
			u.Category = ptr(pick(rng, Categories))
		}
		if rng.IntN(4) == 0 {
			u.Language = ptr(pick(rng, languages))
		}
		if rng.IntN(4) == 0 {
			tags := pickTags(rng)
			if tags == nil {
				tags = []string{}
			}
			u.Tags = &tags
		}
		p.evs = append(p.evs, u)
	case r < 30:
		if p.status == "published" {
			p.status = "unpublished"
			p.evs = append(p.evs, events.ProgramUnpublished{ProgramID: p.id})
		} else {
			p.status = "published"
			p.evs = append(p.evs, events.ProgramPublished{ProgramID: p.id})
		}
	case r < 33:
		p.status = "archived"
		p.evs = append(p.evs, events.ProgramArchived{ProgramID: p.id})
	case r < 55 || len(p.episodes) == 0:
		p.number++
		// The program id with the episode number in place of its "0000" group.
		e := &genEpisode{id: p.id[:24] + fmt.Sprintf("%04x", p.number) + p.id[28:], status: "draft"}
		p.episodes = append(p.episodes, e)
		p.evs = append(p.evs, events.EpisodeRegistered{EpisodeID: e.id, ProgramID: p.id}, events.EpisodeAdded{
			ProgramID: p.id, EpisodeID: e.id, Title: fmt.Sprintf("Episode %d", p.number), Number: p.number,
			Season: rng.IntN(3), Description: "ep", DurationSeconds: 60 + rng.IntN(3600), ExternalID: externalID(rng, p.number),
		})
	default:
		e := pick(rng, p.episodes)
		if e.status == "archived" {
			return
		}
		switch rng.IntN(5) {
		case 0:
			u := events.EpisodeUpdated{ProgramID: p.id, EpisodeID: e.id}
			if rng.IntN(2) == 0 {
				u.Title = ptr(fmt.Sprintf("Ep title %d", rng.IntN(1000)))
			}
			if rng.IntN(3) == 0 {
				u.DurationSeconds = ptr(1 + rng.IntN(86400))
			}
			if rng.IntN(4) == 0 {
				u.Season = ptr(1 + rng.IntN(4))
			}
			p.evs = append(p.evs, u)
		case 1, 2:
			if e.status == "published" {
				e.status = "unpublished"
				p.evs = append(p.evs, events.EpisodeUnpublished{ProgramID: p.id, EpisodeID: e.id})
			} else {
				e.status = "published"
				p.evs = append(p.evs, events.EpisodePublished{ProgramID: p.id, EpisodeID: e.id})
			}
		case 3:
			e.status = "archived"
			p.evs = append(p.evs, events.EpisodeArchived{ProgramID: p.id, EpisodeID: e.id})
		default:
			if e.status != "published" {
				e.status = "published"
				p.evs = append(p.evs, events.EpisodePublished{ProgramID: p.id, EpisodeID: e.id})
			}
		}
	}
}

// interleave merges the programs' events in a random order that keeps each
// program's own order, and stamps envelopes: positions strictly ascending with
// gaps (like the xid-based positions of the PostgreSQL store), versions per stream.
func interleave(rng *rand.Rand, progs []*genProgram) []events.Envelope {
	codec := events.NewCodec()
	next := make([]int, len(progs))
	live := make([]int, 0, len(progs))
	for i := range progs {
		live = append(live, i)
	}
	versions := map[string]int64{}
	var out []events.Envelope
	pos := int64(1 << 20)
	for len(live) > 0 {
		k := rng.IntN(len(live))
		p := progs[live[k]]
		ev := p.evs[next[live[k]]]
		next[live[k]]++
		if next[live[k]] == len(p.evs) {
			live = slices.Delete(live, k, k+1)
		}
		typ, data, err := codec.Encode(ev)
		if err != nil {
			panic(err) // generated events are always encodable
		}
		stream := events.ProgramStreamID(p.id)
		if r, ok := ev.(events.EpisodeRegistered); ok {
			stream = events.EpisodeStreamID(r.EpisodeID)
		}
		versions[stream]++
		pos += 1 + int64(rng.IntN(3))<<20
		out = append(out, events.Envelope{
			EventID:    fmt.Sprintf("0190d5a1-%s-7000-8000-%012x", p.id[9:13], len(out)+1),
			Type:       typ,
			StreamID:   stream,
			Version:    versions[stream],
			Position:   pos,
			OccurredAt: Base.Add(time.Duration(len(out)) * time.Second),
			Metadata:   events.Metadata{Actor: "generator"},
			Data:       data,
		})
	}
	return out
}

// Redeliver returns evs as an at-least-once transport may deliver them: each
// stream's events are first delivered in their order, but a stream now and then
// rewinds a few events and delivers them again (as after a consumer-group
// rebalance) or repeats a single older event after newer ones (a stale duplicate),
// and streams are interleaved differently.
func Redeliver(seed uint64, evs []events.Envelope) []events.Envelope {
	rng := rand.New(rand.NewPCG(seed, 7))
	var order []string
	per := map[string][]events.Envelope{}
	for _, e := range evs {
		if _, ok := per[e.StreamID]; !ok {
			order = append(order, e.StreamID)
		}
		per[e.StreamID] = append(per[e.StreamID], e)
	}
	seqs := make([][]events.Envelope, len(order))
	for i, s := range order {
		src := per[s]
		var seq []events.Envelope
		for j := 0; j < len(src); j++ {
			seq = append(seq, src[j])
			switch rng.IntN(8) {
			case 0, 1: // rewind: deliver the last few again, in order
				back := 1 + rng.IntN(min(j+1, 5))
				seq = append(seq, src[j+1-back:j+1]...)
			case 2: // a stale duplicate of an earlier event, after newer ones
				seq = append(seq, src[rng.IntN(j+1)])
			}
		}
		seqs[i] = seq
	}
	var out []events.Envelope
	next := make([]int, len(seqs))
	live := make([]int, len(seqs))
	for i := range live {
		live[i] = i
	}
	for len(live) > 0 {
		k := rng.IntN(len(live))
		i := live[k]
		out = append(out, seqs[i][next[i]])
		next[i]++
		if next[i] == len(seqs[i]) {
			live = slices.Delete(live, k, k+1)
		}
	}
	return out
}

// MustJSON marshals v or panics; for building test event data.
func MustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// GoldenAssets returns the golden asset events of events/testdata as the artwork
// of the golden program's episode, to append after Golden: the slot's pointer, the
// upload, the same upload again (a replacement with the same image: stream version
// 2, which the golden AssetProcessed names), and the processed event. Positions
// continue above Golden's.
func GoldenAssets(t testing.TB) []events.Envelope {
	t.Helper()
	_, file, _, _ := goruntime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "events", "testdata")
	codec := events.NewCodec()
	var out []events.Envelope
	versions := map[string]int64{}
	for i, typ := range []string{events.TypeAssetSlotAssigned, events.TypeAssetUploaded, events.TypeAssetUploaded, events.TypeAssetProcessed} {
		raw, err := os.ReadFile(filepath.Join(dir, typ+".json"))
		if err != nil {
			t.Fatalf("golden event %s: %v", typ, err)
		}
		ev, err := codec.Decode(typ, raw)
		if err != nil {
			t.Fatalf("golden event %s: %v", typ, err)
		}
		var stream string
		switch e := ev.(type) {
		case events.AssetSlotAssigned:
			stream = events.AssetSlotStreamID(e.ProgramID, e.EpisodeID, e.Kind)
		case events.AssetUploaded:
			stream = events.AssetStreamID(e.AssetID)
		case events.AssetProcessed:
			stream = events.AssetStreamID(e.AssetID)
		}
		versions[stream]++
		n := len(goldenOrder) + i
		out = append(out, events.Envelope{
			EventID:    fmt.Sprintf("0190d5a0-0000-7000-9000-%012x", n+1),
			Type:       typ,
			StreamID:   stream,
			Version:    versions[stream],
			Position:   int64(n+1)<<20 | 1,
			OccurredAt: Base.Add(time.Duration(n) * time.Second),
			Metadata:   events.Metadata{Actor: "golden"},
			Data:       raw,
		})
	}
	return out
}
