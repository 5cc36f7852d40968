// Package meili is the production search adapter on Meilisearch
// (github.com/meilisearch/meilisearch-go). It implements the search projection's
// ports (search.Writer, search.Reader, search.Admin) and passes the conformance
// suite in infra/search/searchtest when a server is given to its test.
//
// # Index settings
//
// Searchable attributes in weight order: title, tags, episode_titles, description
// (the same order as the PostgreSQL adapter's tsvector weights A, B, C, D).
// Filterable: category, language, and the adapter's own id and deleted. Sortable:
// published_at (Unix microseconds, a number, so it sorts) and id. Ranking rules:
// words, typo, proximity, attribute, exactness, then sort, so equally relevant hits
// are ordered newest first and then by id, as the port requires. Every search uses
// matchingStrategy "all" (every word must match, with typos), like the PostgreSQL
// adapter, and pagination.maxTotalHits is search.MaxHits.
//
// # Version guard and tombstones
//
// Meilisearch has no conditional write, so Upsert and Delete read the current
// versions of the ids they are given (one filtered fetch per batch) and write only
// what is newer. A deletion writes a tombstone document (deleted: true, text
// emptied) that keeps its version, so an older upsert arriving later is still
// ignored; searches filter deleted = false. The read-then-write is safe against
// redelivered and reordered batches of one writer; two writers racing on the same
// program at the same instant are excluded by the projection's partitioning (one
// consumer per program), not by this adapter.
//
// # Writes are synchronous
//
// Every write waits for its Meilisearch task, so the projection commits its
// checkpoint only after the index has the documents, and a failed task is an error.
package meili

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/meilisearch/meilisearch-go"

	"github.com/mediamesh/mediamesh/projections/search"
)

// Index is the Meilisearch search adapter.
type Index struct {
	client meilisearch.ServiceManager
	// poll is how often a task's status is polled while waiting for it.
	poll time.Duration
}

var (
	_ search.Writer = (*Index)(nil)
	_ search.Reader = (*Index)(nil)
	_ search.Admin  = (*Index)(nil)
)

// New returns the adapter on client (meilisearch.New(url, meilisearch.WithAPIKey(key))).
func New(client meilisearch.ServiceManager) (*Index, error) {
	if client == nil {
		return nil, errors.New("search meilisearch: nil client")
	}
	return &Index{client: client, poll: 20 * time.Millisecond}, nil
}

// Field names of a document in Meilisearch.
const (
	fieldID            = "id"
	fieldVersion       = "version"
	fieldDeleted       = "deleted"
	fieldTitle         = "title"
	fieldDescription   = "description"
	fieldCategory      = "category"
	fieldLanguage      = "language"
	fieldTags          = "tags"
	fieldEpisodeTitles = "episode_titles"
	fieldPublishedAt   = "published_at"
)

// doc is a document as Meilisearch stores it.
type doc struct {
	ID            string   `json:"id"`
	Version       int64    `json:"version"`
	Deleted       bool     `json:"deleted"`
	Title         string   `json:"title"`
	Description   string   `json:"description"`
	Category      string   `json:"category"`
	Language      string   `json:"language"`
	Tags          []string `json:"tags"`
	EpisodeTitles []string `json:"episode_titles"`
	EpisodeCount  int      `json:"episode_count"`
	// PublishedAt is in Unix microseconds (0: not set), the precision PostgreSQL keeps.
	PublishedAt int64 `json:"published_at"`
}

func toDoc(d search.Document) doc {
	out := doc{
		ID: d.ID, Version: d.Version, Title: d.Title, Description: d.Description, Category: d.Category,
		Language: d.Language, Tags: nonNil(d.Tags), EpisodeTitles: nonNil(d.EpisodeTitles), EpisodeCount: d.EpisodeCount,
	}
	if !d.PublishedAt.IsZero() {
		out.PublishedAt = d.PublishedAt.UnixMicro()
	}
	return out
}

func (d doc) document() search.Document {
	out := search.Document{
		ID: d.ID, Version: d.Version, Title: d.Title, Description: d.Description, Category: d.Category,
		Language: d.Language, Tags: nonNil(d.Tags), EpisodeTitles: nonNil(d.EpisodeTitles), EpisodeCount: d.EpisodeCount,
	}
	if d.PublishedAt != 0 {
		out.PublishedAt = time.UnixMicro(d.PublishedAt).UTC()
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// documentID is what Meilisearch accepts as a document id.
var documentID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,511}$`)

// settings are the index settings EnsureIndex applies (see the package comment).
func settings() *meilisearch.Settings {
	return &meilisearch.Settings{
		SearchableAttributes: []string{fieldTitle, fieldTags, fieldEpisodeTitles, fieldDescription},
		FilterableAttributes: []string{fieldCategory, fieldLanguage, fieldDeleted, fieldID},
		SortableAttributes:   []string{fieldPublishedAt, fieldID},
		RankingRules:         []string{"words", "typo", "proximity", "attribute", "exactness", "sort"},
		Pagination:           &meilisearch.Pagination{MaxTotalHits: search.MaxHits},
	}
}

// EnsureIndex creates the index (primary key id) when it does not exist and
// applies the settings; both steps are idempotent.
func (x *Index) EnsureIndex(ctx context.Context, index string) error {
	if err := search.ValidateIndexName(index); err != nil {
		return err
	}
	if _, err := x.client.GetIndex(ctx, index); err != nil {
		if !isCode(err, meilisearch.APIErrCodeIndexNotFound) {
			return fmt.Errorf("ensure search index %s: %w", index, err)
		}
		info, err := x.client.CreateIndex(ctx, &meilisearch.IndexConfig{Uid: index, PrimaryKey: fieldID})
		if err != nil {
			return fmt.Errorf("create search index %s: %w", index, err)
		}
		// Another process creating it at the same time is fine.
		if err := x.wait(ctx, info, meilisearch.APIErrCodeIndexAlreadyExists); err != nil {
			return fmt.Errorf("create search index %s: %w", index, err)
		}
	}
	info, err := x.client.Index(index).UpdateSettings(ctx, settings())
	if err != nil {
		return fmt.Errorf("configure search index %s: %w", index, mapErr(err))
	}
	if err := x.wait(ctx, info); err != nil {
		return fmt.Errorf("configure search index %s: %w", index, err)
	}
	return nil
}

// DropIndex deletes the index; a missing index is not an error.
func (x *Index) DropIndex(ctx context.Context, index string) error {
	if err := search.ValidateIndexName(index); err != nil {
		return err
	}
	info, err := x.client.DeleteIndex(ctx, index)
	if err != nil {
		if isCode(err, meilisearch.APIErrCodeIndexNotFound) {
			return nil
		}
		return fmt.Errorf("drop search index %s: %w", index, err)
	}
	if err := x.wait(ctx, info, meilisearch.APIErrCodeIndexNotFound); err != nil {
		return fmt.Errorf("drop search index %s: %w", index, err)
	}
	return nil
}

// Swap exchanges the two indexes with Meilisearch's atomic index swap: searches
// see either the old or the new pair.
func (x *Index) Swap(ctx context.Context, a, b string) error {
	for _, name := range []string{a, b} {
		if err := search.ValidateIndexName(name); err != nil {
			return err
		}
	}
	if a == b {
		return fmt.Errorf("swap search index %s with itself: %w", a, search.ErrInvalidIndexName)
	}
	for _, name := range []string{a, b} {
		if _, err := x.client.GetIndex(ctx, name); err != nil {
			return fmt.Errorf("swap search indexes %s and %s: %w", a, b, mapErr(err))
		}
	}
	info, err := x.client.SwapIndexes(ctx, []*meilisearch.SwapIndexesParams{{Indexes: []string{a, b}}})
	if err != nil {
		return fmt.Errorf("swap search indexes %s and %s: %w", a, b, mapErr(err))
	}
	if err := x.wait(ctx, info); err != nil {
		return fmt.Errorf("swap search indexes %s and %s: %w", a, b, err)
	}
	return nil
}

// Upsert writes the documents newer than the index's versions (see search.Writer).
func (x *Index) Upsert(ctx context.Context, index string, docs []search.Document) error {
	if err := search.ValidateIndexName(index); err != nil {
		return err
	}
	docs = search.DedupeDocs(docs)
	ids := make([]string, len(docs))
	for i, d := range docs {
		if !documentID.MatchString(d.ID) {
			return fmt.Errorf("upsert into search index %s: document id %q: only letters, digits, - and _ are allowed", index, d.ID)
		}
		ids[i] = d.ID
	}
	current, err := x.versions(ctx, index, ids)
	if err != nil {
		return fmt.Errorf("upsert into search index %s: %w", index, err)
	}
	var out []doc
	for _, d := range docs {
		if v, ok := current[d.ID]; !ok || d.Version > v {
			out = append(out, toDoc(d))
		}
	}
	if err := x.write(ctx, index, out); err != nil {
		return fmt.Errorf("upsert into search index %s: %w", index, err)
	}
	return nil
}

// Delete writes tombstones newer than the index's versions (see search.Tombstone).
func (x *Index) Delete(ctx context.Context, index string, tombstones []search.Tombstone) error {
	if err := search.ValidateIndexName(index); err != nil {
		return err
	}
	tombstones = search.DedupeTombstones(tombstones)
	ids := make([]string, len(tombstones))
	for i, t := range tombstones {
		if !documentID.MatchString(t.ID) {
			return fmt.Errorf("delete from search index %s: document id %q: only letters, digits, - and _ are allowed", index, t.ID)
		}
		ids[i] = t.ID
	}
	current, err := x.versions(ctx, index, ids)
	if err != nil {
		return fmt.Errorf("delete from search index %s: %w", index, err)
	}
	var out []doc
	for _, t := range tombstones {
		if v, ok := current[t.ID]; !ok || t.Version > v {
			out = append(out, doc{ID: t.ID, Version: t.Version, Deleted: true, Tags: []string{}, EpisodeTitles: []string{}})
		}
	}
	if err := x.write(ctx, index, out); err != nil {
		return fmt.Errorf("delete from search index %s: %w", index, err)
	}
	return nil
}

// batchSize bounds one fetch filter and one document write.
const batchSize = 500

// versions returns the stored version (document or tombstone) of each id that
// the index holds.
func (x *Index) versions(ctx context.Context, index string, ids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(ids))
	for chunk := range slices.Chunk(ids, batchSize) {
		quoted := make([]string, len(chunk))
		for i, id := range chunk {
			quoted[i] = quote(id)
		}
		var res meilisearch.DocumentsResult
		err := x.client.Index(index).GetDocuments(ctx, &meilisearch.DocumentsQuery{
			Filter: fieldID + " IN [" + strings.Join(quoted, ", ") + "]",
			Fields: []string{fieldID, fieldVersion},
			Limit:  int64(len(chunk)),
		}, &res)
		if err != nil {
			return nil, fmt.Errorf("read versions: %w", mapErr(err))
		}
		for _, h := range res.Results {
			var d doc
			if err := h.DecodeInto(&d); err != nil {
				return nil, fmt.Errorf("read versions: %w", err)
			}
			out[d.ID] = d.Version
		}
	}
	return out, nil
}

// write replaces docs (whole documents) in batches and waits for each task.
func (x *Index) write(ctx context.Context, index string, docs []doc) error {
	pk := fieldID
	for chunk := range slices.Chunk(docs, batchSize) {
		info, err := x.client.Index(index).AddDocuments(ctx, chunk, &meilisearch.DocumentOptions{PrimaryKey: &pk})
		if err != nil {
			return mapErr(err)
		}
		if err := x.wait(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// Search answers one page of q (see search.Result). Without a category or
// language filter one search returns the hits and the facets; with one, a
// multi-search adds an unfiltered query for the facets (they count the text's
// matches before those filters, as the port says).
func (x *Index) Search(ctx context.Context, index string, q search.Query) (search.Result, error) {
	if err := search.ValidateIndexName(index); err != nil {
		return search.Result{}, err
	}
	q = q.Normalized()
	live := fieldDeleted + " = false"
	filters := []string{live}
	if q.Category != "" {
		filters = append(filters, fieldCategory+" = "+quote(q.Category))
	}
	if q.Language != "" {
		filters = append(filters, fieldLanguage+" = "+quote(q.Language))
	}
	perPage := int64(q.Limit)
	hits := &meilisearch.SearchRequest{
		IndexUID:             index,
		Query:                q.Text,
		Filter:               strings.Join(filters, " AND "),
		Sort:                 []string{fieldPublishedAt + ":desc", fieldID + ":asc"},
		MatchingStrategy:     meilisearch.All,
		AttributesToRetrieve: []string{fieldID},
		Page:                 int64(q.Page),
		HitsPerPage:          &perPage,
	}
	facets := []string{fieldCategory, fieldLanguage}
	var hitsRes, facetsRes *meilisearch.SearchResponse
	if len(filters) == 1 {
		hits.Facets = facets
		res, err := x.client.Index(index).Search(ctx, q.Text, hits)
		if err != nil {
			return search.Result{}, fmt.Errorf("search index %s: %w", index, mapErr(err))
		}
		hitsRes, facetsRes = res, res
	} else {
		none := int64(0)
		res, err := x.client.MultiSearch(ctx, &meilisearch.MultiSearchRequest{Queries: []*meilisearch.SearchRequest{
			hits,
			{
				IndexUID: index, Query: q.Text, Filter: live, MatchingStrategy: meilisearch.All,
				Facets: facets, Page: 1, HitsPerPage: &none,
			},
		}})
		if err != nil {
			return search.Result{}, fmt.Errorf("search index %s: %w", index, mapErr(err))
		}
		if len(res.Results) != 2 {
			return search.Result{}, fmt.Errorf("search index %s: multi-search returned %d results, want 2", index, len(res.Results))
		}
		hitsRes, facetsRes = &res.Results[0], &res.Results[1]
	}
	out := search.Result{IDs: make([]string, 0, len(hitsRes.Hits)), Total: int(min(hitsRes.TotalHits, search.MaxHits))}
	for _, h := range hitsRes.Hits {
		var d struct {
			ID string `json:"id"`
		}
		if err := h.DecodeInto(&d); err != nil {
			return search.Result{}, fmt.Errorf("search index %s: %w", index, err)
		}
		out.IDs = append(out.IDs, d.ID)
	}
	dist := map[string]map[string]int{}
	if len(facetsRes.FacetDistribution) > 0 {
		if err := json.Unmarshal(facetsRes.FacetDistribution, &dist); err != nil {
			return search.Result{}, fmt.Errorf("search index %s: facets: %w", index, err)
		}
	}
	out.Facets = map[string]map[string]int{search.FacetCategory: {}, search.FacetLanguage: {}}
	for _, f := range facets {
		for value, n := range dist[f] {
			out.Facets[f][value] = n
		}
	}
	return out, nil
}

// Documents lists every live document of the index, ordered by id (byte order).
func (x *Index) Documents(ctx context.Context, index string) ([]search.Document, error) {
	if err := search.ValidateIndexName(index); err != nil {
		return nil, err
	}
	var out []search.Document
	for offset := int64(0); ; offset += batchSize {
		var res meilisearch.DocumentsResult
		err := x.client.Index(index).GetDocuments(ctx, &meilisearch.DocumentsQuery{
			Filter: fieldDeleted + " = false", Offset: offset, Limit: batchSize,
		}, &res)
		if err != nil {
			return nil, fmt.Errorf("list search index %s: %w", index, mapErr(err))
		}
		for _, h := range res.Results {
			var d doc
			if err := h.DecodeInto(&d); err != nil {
				return nil, fmt.Errorf("list search index %s: %w", index, err)
			}
			out = append(out, d.document())
		}
		if len(res.Results) < batchSize {
			break
		}
	}
	slices.SortFunc(out, func(a, b search.Document) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// wait waits for a task and turns its failure into an error; failures with one of
// the tolerated codes count as success.
func (x *Index) wait(ctx context.Context, info *meilisearch.TaskInfo, tolerated ...meilisearch.APIErrCode) error {
	task, err := x.client.WaitForTask(ctx, info.TaskUID, x.poll)
	if err != nil {
		return fmt.Errorf("wait for task %d: %w", info.TaskUID, err)
	}
	switch task.Status {
	case meilisearch.TaskStatusSucceeded:
		return nil
	case meilisearch.TaskStatusFailed:
		if slices.Contains(tolerated, task.Error.Code) {
			return nil
		}
		err := fmt.Errorf("task %d (%s) failed: %s: %s", task.UID, task.Type, task.Error.Code, task.Error.Message)
		if task.Error.Code == meilisearch.APIErrCodeIndexNotFound {
			return fmt.Errorf("%w: %w", search.ErrIndexNotFound, err)
		}
		return err
	default:
		return fmt.Errorf("task %d (%s) ended %s", task.UID, task.Type, task.Status)
	}
}

// quote writes s as a filter string literal.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func isCode(err error, code meilisearch.APIErrCode) bool {
	var me *meilisearch.Error
	return errors.As(err, &me) && me.HasCode(code)
}

// mapErr turns Meilisearch's index_not_found into search.ErrIndexNotFound.
func mapErr(err error) error {
	if isCode(err, meilisearch.APIErrCodeIndexNotFound) {
		return fmt.Errorf("%w: %w", search.ErrIndexNotFound, err)
	}
	return err
}
