// Package search is the search projection: it keeps one document per visible
// (published) program in a search index, and declares the ports that index
// adapters implement (infra/search/postgres, the embedded default, and
// infra/search/meili), with the types both sides share.
//
// Decisions:
//
//   - The index holds only what discovery may show: a program's document exists
//     while the program is published; unpublishing or archiving deletes it
//     (a tombstone, see Tombstone). Episode titles are indexed with the lowest
//     weight but one: only those of published episodes.
//   - Every document and tombstone carries the program stream version it reflects,
//     and adapters keep the highest version per id (Writer), so the index is
//     idempotent by itself: redelivered, duplicated and reordered writes, a rebuild
//     racing live traffic, or a retried batch after a failed commit change nothing.
//   - The index name carries the projection version ("programs_v1"), so a rebuild
//     writes "programs_v2" beside the serving one; the cut-over is the projection's
//     pointer, or Admin.Swap where a fixed name is wanted.
//   - Facets count the text's matches before the category and language filters
//     (see Result); totals and deep paging stop at MaxHits, as in Meilisearch.
//   - The query side may not import projections: it declares its own reader port,
//     and the composition root adapts an adapter's Search (Reader) to it.
package search
