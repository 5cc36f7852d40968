// Package documents is the Redis sink of the catalog projection: the discovery
// documents of every visible program and episode, written through on every change,
// plus the generation counters and the invalidation channel the query API builds
// its caches on. The Redis adapter is infra/redis (Documents); this package decides
// what is written, when, and in which order.
//
// # Keys (a contract with the query API; vN is the catalog projection version)
//
//	mm:catalog:v1:program:{id}            JSON of API.md's discovery program
//	                                      {id, title, description, category, language,
//	                                      tags, published_at, episode_count, images,
//	                                      version}; only while the program is visible
//	mm:catalog:v1:program:{id}:episodes   JSON array of the program's visible episodes
//	                                      (API.md's episode shape) ordered by season,
//	                                      number; only while the program is visible
//	mm:catalog:v1:episode:{id}            JSON of one visible episode {id, program_id,
//	                                      title, number, season, description,
//	                                      duration_seconds, published_at, images}
//	mm:catalog:v1:gen:browse              generation counters, INCRed after a flush that
//	mm:catalog:v1:gen:search              changed, added or removed a program document
//	mm:catalog:v1:position                global position up to which every catalog
//	                                      change is in Redis (see Flusher)
//	channel mm:catalog:v1:invalidate      {"programs":[ids],"episodes":[ids],"position":P}
//	                                      after every flush that changed something
//
// {id} stands for the bare UUID. Values are compact JSON in the field order above;
// times are RFC 3339 in UTC with Go's encoding (fractional seconds only when
// non-zero); tags and lists are never null; images is the catalog row's images
// object ({} until artwork exists). "version" is the program stream version the
// document reflects: a read-your-writes check compares it with the token's version.
// Each document key has a guard key beside it, "{<document key>}:guard" (the braces
// are a Redis Cluster hash tag, so both keys live in one slot), which the adapter's
// Lua script compares before writing (see Write.Guard).
//
// # Why an outbox, not a write inside the catalog transaction
//
// The catalog projection records, in its own transaction, which programs and
// episodes each batch changed (catalog.WithDocuments, table
// catalog_documents_outbox_v1); the Flusher writes their documents from the
// committed rows and then deletes the entries. So:
//
//   - Redis never misses a committed change: the entry commits with the rows, and is
//     deleted only after its documents were written.
//   - Redis being down or slow never holds back the PostgreSQL read models (which the
//     query API falls back to), nor the event store's readers, which a long catalog
//     transaction would stall: entries simply wait, and the flusher retries with
//     backoff. Writing Redis inside Apply would have made a Redis outage stop the
//     whole discovery side's freshness, fallback included.
//   - Documents are built from the committed rows, never from events, so a
//     redelivered or replayed event cannot produce an older document; the guard (the
//     newest outbox entry id of the program, which grows in commit order because the
//     catalog has one writer) stops a delayed write of a dead flusher from
//     overwriting a newer one, deletions included.
//
// The price: Redis trails the catalog's checkpoint by one flush (milliseconds; the
// flusher is woken by the runtime's commit notification). Readers that need an
// exact answer compare the document's version (or mm:catalog:v1:position) with their
// consistency token and otherwise read PostgreSQL. In the Kafka mode the catalog's
// checkpoint, hence the position, is the highest position applied rather than a
// watermark (see projections/runtime): there the version is the exact check.
//
// A rebuilt catalog version writes its own outbox and key space: run a Flusher with
// Options.Version and a store on CatalogKeyspace(version) beside the serving one.
//
// If Redis loses its data (a restart without persistence), the position key is gone:
// the flusher notices before its next flush (and by its conditional SET after one)
// and rewrites every document from the catalog (Resync).
package documents

import (
	"context"
	"encoding/json"
	"time"
)

// Program is the document of a visible program: API.md's discovery program shape.
type Program struct {
	ID           string          `json:"id"`
	Title        string          `json:"title"`
	Description  string          `json:"description"`
	Category     string          `json:"category"`
	Language     string          `json:"language"`
	Tags         []string        `json:"tags"`
	PublishedAt  *time.Time      `json:"published_at"`
	EpisodeCount int             `json:"episode_count"`
	Images       json.RawMessage `json:"images"`
	Version      int64           `json:"version"`
}

// Episode is the document of a visible episode: API.md's discovery episode shape.
type Episode struct {
	ID              string          `json:"id"`
	ProgramID       string          `json:"program_id"`
	Title           string          `json:"title"`
	Number          int             `json:"number"`
	Season          int             `json:"season"`
	Description     string          `json:"description"`
	DurationSeconds int             `json:"duration_seconds"`
	PublishedAt     *time.Time      `json:"published_at"`
	Images          json.RawMessage `json:"images"`
}

// Kind is the kind of a document.
type Kind int

// Document kinds.
const (
	// KindProgram is mm:catalog:vN:program:{id}.
	KindProgram Kind = iota
	// KindEpisodes is mm:catalog:vN:program:{id}:episodes.
	KindEpisodes
	// KindEpisode is mm:catalog:vN:episode:{id}.
	KindEpisode
)

func (k Kind) String() string {
	switch k {
	case KindProgram:
		return "program"
	case KindEpisodes:
		return "episodes"
	case KindEpisode:
		return "episode"
	}
	return "unknown"
}

// Write is one document to store or delete.
type Write struct {
	Kind Kind
	// ID is the program id (KindProgram, KindEpisodes) or the episode id.
	ID string
	// Guard orders writes of one document: a write whose guard is not above the
	// stored guard is ignored (0 changes nothing). Guards grow with every change of
	// the document's program, so a delayed write can never replace a newer one.
	Guard int64
	// Value is the JSON document; nil deletes it.
	Value []byte
}

// Notice is what a flush announces after its writes: the generation counters it
// bumps, the position Redis now includes, and the invalidation message.
type Notice struct {
	// Programs and Episodes are the ids whose documents changed (the query API
	// drops them from its in-process caches). Never nil.
	Programs []string `json:"programs"`
	Episodes []string `json:"episodes"`
	// Position is the global position up to which every catalog change is in
	// Redis (unchanged when the flush did not drain the outbox).
	Position int64 `json:"position"`
	// Browse and Search ask for mm:catalog:vN:gen:browse and :gen:search to be
	// incremented.
	Browse bool `json:"-"`
	Search bool `json:"-"`
}

// Store is the port the flusher writes through; infra/redis.Documents implements it.
type Store interface {
	// Write applies writes and reports, per write, whether the stored document
	// changed (appeared, differed or disappeared). Writes of one call may be applied
	// in any order and concurrently: call Write again for what must come after.
	Write(ctx context.Context, writes []Write) ([]bool, error)
	// Announce bumps the counters n asks for, records n.Position and publishes n on
	// the invalidation channel. When initial is false the position is recorded only
	// if a position is stored already; ok is false when none was (the store lost its
	// data since the last look: the caller resyncs).
	Announce(ctx context.Context, n Notice, initial bool) (ok bool, err error)
	// Position returns the recorded position; ok is false when there is none (never
	// written, or the store lost its data).
	Position(ctx context.Context) (pos int64, ok bool, err error)
}
