package redis

import "fmt"

// Keyspace names the Redis keys of one version of the catalog projection. The names
// are a contract with the query API (documented in projections/documents):
//
//	mm:catalog:v1:program:{id}            program document
//	mm:catalog:v1:program:{id}:episodes   the program's visible episodes
//	mm:catalog:v1:episode:{id}            episode document
//	mm:catalog:v1:gen:browse              generation counter of browse lists
//	mm:catalog:v1:gen:search              generation counter of search results
//	mm:catalog:v1:position                position Redis holds every change up to
//	mm:catalog:v1:invalidate              pub/sub channel of invalidations
//
// ({id} is the bare UUID.) The version is part of every name, so a rebuilt version
// writes beside the serving one and the cut-over is a pointer change.
type Keyspace struct {
	base string
}

// CatalogKeyspace returns the key space of catalog projection version v.
func CatalogKeyspace(v int) Keyspace { return Keyspace{base: fmt.Sprintf("mm:catalog:v%d", v)} }

// WithNamespace returns the key space under a namespace prefix ("test-42:" gives
// "test-42:mm:catalog:v1:…"), so tests sharing one Redis cannot see each other's
// keys. Production uses no namespace.
func (k Keyspace) WithNamespace(ns string) Keyspace { return Keyspace{base: ns + k.base} }

// Base is the common prefix ("mm:catalog:v1").
func (k Keyspace) Base() string { return k.base }

// Program is the key of a program's document.
func (k Keyspace) Program(id string) string { return k.base + ":program:" + id }

// ProgramEpisodes is the key of a program's list of visible episodes.
func (k Keyspace) ProgramEpisodes(id string) string { return k.base + ":program:" + id + ":episodes" }

// Episode is the key of an episode's document.
func (k Keyspace) Episode(id string) string { return k.base + ":episode:" + id }

// GenBrowse is the generation counter of browse lists (and categories).
func (k Keyspace) GenBrowse() string { return k.base + ":gen:browse" }

// GenSearch is the generation counter of search results.
func (k Keyspace) GenSearch() string { return k.base + ":gen:search" }

// Position is the key holding the global position up to which every catalog
// change is in Redis.
func (k Keyspace) Position() string { return k.base + ":position" }

// Invalidate is the pub/sub channel of invalidation messages.
func (k Keyspace) Invalidate() string { return k.base + ":invalidate" }

// Guard is the key of a document's write guard: the document key inside a Redis
// Cluster hash tag, so it hashes to the document key's own slot (a key without
// braces hashes as a whole; "{k}:guard" hashes as "k").
func Guard(docKey string) string { return "{" + docKey + "}:guard" }
