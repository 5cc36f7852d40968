package search

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Index names. A search index is a sink of a rebuildable projection, so its name
// carries the projection version from the first day ("programs_v1"); a rebuild
// writes "programs_v2" beside it and the cut-over is a pointer change (or a Swap).
const indexBase = "programs"

// IndexName is the name of the program index of projection version v.
func IndexName(v int) string { return fmt.Sprintf("%s_v%d", indexBase, v) }

// indexNamePattern keeps index names safe as PostgreSQL identifiers (after a
// "search_" prefix and index suffixes, within 63 bytes) and as Meilisearch uids.
var indexNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// ErrInvalidIndexName is returned for an index name that is not a lower-case
// identifier of at most 40 characters.
var ErrInvalidIndexName = errors.New("invalid search index name")

// ErrIndexNotFound is returned by a search, a swap or a listing of an index that
// does not exist (never created, or dropped).
var ErrIndexNotFound = errors.New("search index not found")

// ValidateIndexName checks an index name; every adapter calls it before using the
// name, so a name can never inject SQL or address another tenant's index.
func ValidateIndexName(name string) error {
	if !indexNamePattern.MatchString(name) {
		return fmt.Errorf("%q: %w", name, ErrInvalidIndexName)
	}
	return nil
}

// Document is what the search index holds for one visible (published) program.
//
// Version is the program stream version the document reflects: adapters keep, per
// ID, the highest version they were given (by Upsert or Delete) and ignore anything
// older or equal, so redelivered and reordered writes cannot resurrect an old state.
// EpisodeTitles are the titles of the program's visible episodes (in season, number
// order) and are searched with the lowest-but-one weight; EpisodeCount is their number.
// PublishedAt is the time the program was first published; it orders ties.
type Document struct {
	ID            string
	Title         string
	Description   string
	Category      string
	Language      string
	Tags          []string
	EpisodeTitles []string
	EpisodeCount  int
	PublishedAt   time.Time
	Version       int64
}

// Tombstone removes a document as of a program stream version: the document goes
// away if its version is lower, and the tombstone itself is remembered, so a later
// (redelivered) Upsert of a version up to Version is ignored. An Upsert of a higher
// version (the program was published again) brings the document back. Deleting is
// therefore idempotent and order-independent, like upserting.
type Tombstone struct {
	ID      string
	Version int64
}

// Query is a search request. Text is matched typo-tolerantly against title (highest
// weight), tags, episode titles and description (lowest); an empty Text matches
// every document. Category and Language, when set, filter exactly. Page counts
// from 1; Limit is the page size.
type Query struct {
	Text     string
	Category string
	Language string
	Page     int
	Limit    int
}

// Paging defaults and bounds that every adapter applies through Normalized.
const (
	DefaultLimit = 20
	MaxLimit     = 100
	// MaxHits bounds how deep paging goes and what Total reports (Meilisearch's
	// default pagination.maxTotalHits, which its adapter sets explicitly): a search
	// examines at most this many candidates per source, so a query that matches
	// most of the catalog costs what a query of MaxHits matches costs. Pages beyond
	// it are empty; Total says "MaxHits or more".
	MaxHits = 1000
	// MaxTextRunes bounds the work one query text can cause; the API allows 200.
	MaxTextRunes = 200
)

// Normalized returns q with Page and Limit within bounds: Page < 1 is 1, Limit < 1
// is DefaultLimit, Limit > MaxLimit is MaxLimit. Text longer than MaxTextRunes is cut.
func (q Query) Normalized() Query {
	if q.Page < 1 {
		q.Page = 1
	}
	if q.Limit < 1 {
		q.Limit = DefaultLimit
	}
	if q.Limit > MaxLimit {
		q.Limit = MaxLimit
	}
	if r := []rune(q.Text); len(r) > MaxTextRunes {
		q.Text = string(r[:MaxTextRunes])
	}
	return q
}

// Offset is the number of hits before q's page (after Normalized).
func (q Query) Offset() int { return (q.Page - 1) * q.Limit }

// Facet names in Result.Facets.
const (
	FacetCategory = "category"
	FacetLanguage = "language"
)

// Result is one page of a search.
//
// IDs are program ids, best first; ties are broken by PublishedAt (newest first) and
// then by ID, so paging is stable. Total counts the hits that match the text and
// the filters, capped at MaxHits. Typo matches rank below every exact match, so an
// adapter may look for them only when the exact matches do not fill the requested
// page (the PostgreSQL adapter does): Total and the facets then count the exact
// matches alone, and may grow on a page that reaches past them. Meilisearch always
// counts both.
//
// Facets count, per category and per language, the documents that match the text
// query, before the Category and Language filters are applied: a client shows every
// category the text matches with its count, whatever category is selected. (The
// alternative, each facet under the other facet's filter, costs a second grouping
// pass for little benefit in a catalog with few languages.) Both facet maps are
// always present, empty when nothing matches.
type Result struct {
	IDs    []string
	Total  int
	Facets map[string]map[string]int
}

// Writer is the port the search projection writes through. Every method is
// idempotent; Upsert and Delete keep, per document id, the highest version given.
type Writer interface {
	// EnsureIndex creates the index (and its settings) when it does not exist.
	EnsureIndex(ctx context.Context, index string) error
	// Upsert writes documents whose Version is higher than what the index holds
	// for their ID (a document or a tombstone); others are ignored.
	Upsert(ctx context.Context, index string, docs []Document) error
	// Delete removes documents as of the tombstones' versions (see Tombstone).
	Delete(ctx context.Context, index string, tombstones []Tombstone) error
}

// Reader is the read side of a search index, as the query API and the
// conformance suite use it. (The query packages may not import projections; they
// declare their own port, and the composition root adapts.)
type Reader interface {
	Search(ctx context.Context, index string, q Query) (Result, error)
}

// Admin manages whole indexes for a rebuild: a new version is built beside the
// serving one and then either becomes the serving name through the projection's
// pointer or trades places with it through Swap; the old one is dropped.
type Admin interface {
	// DropIndex deletes the index and everything in it; dropping a missing index
	// is not an error.
	DropIndex(ctx context.Context, index string) error
	// Swap atomically exchanges the contents of two existing indexes: afterwards a
	// search of a returns what b held, and the other way round.
	Swap(ctx context.Context, a, b string) error
	// Documents lists every live document of the index, ordered by ID (for
	// comparing a rebuilt index with the live one, and for tests).
	Documents(ctx context.Context, index string) ([]Document, error)
}

// DedupeDocs keeps, per ID, the document with the highest Version (the last one
// given when versions are equal). Adapters use it so a batch may name an ID twice.
func DedupeDocs(docs []Document) []Document {
	pos := make(map[string]int, len(docs))
	out := make([]Document, 0, len(docs))
	for _, d := range docs {
		if i, ok := pos[d.ID]; ok {
			if d.Version >= out[i].Version {
				out[i] = d
			}
			continue
		}
		pos[d.ID] = len(out)
		out = append(out, d)
	}
	return out
}

// DedupeTombstones keeps, per ID, the tombstone with the highest Version.
func DedupeTombstones(ts []Tombstone) []Tombstone {
	pos := make(map[string]int, len(ts))
	out := make([]Tombstone, 0, len(ts))
	for _, t := range ts {
		if i, ok := pos[t.ID]; ok {
			if t.Version > out[i].Version {
				out[i] = t
			}
			continue
		}
		pos[t.ID] = len(out)
		out = append(out, t)
	}
	return out
}
