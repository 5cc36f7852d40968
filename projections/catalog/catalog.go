// Package catalog is the discovery read model in PostgreSQL: programs, episodes,
// category counts and artwork, rebuilt from the program and asset streams.
//
// Decisions:
//
//   - Every program and episode is kept whatever its status; the status column lets
//     queries show only what is visible (published programs, and published episodes
//     of published programs).
//   - version on a row is the program stream version of the last event applied to it.
//     An event whose stream version is not above the row's has been applied already
//     and changes nothing, so an event delivered again (a Kafka redelivery, a replay)
//     changes nothing. Every event of a program's stream (episode events included)
//     moves the program row's version and updated_at, as it moves the aggregate's.
//   - A batch is applied set-wise, in two round trips whatever its size: one reads
//     the current rows of every program and episode the batch names, the events are
//     folded onto them in Go (in batch order, each behind the version guard), and one
//     pipelined round trip writes the changed rows (one upsert per table from column
//     arrays, itself guarded by "version < EXCLUDED.version"), the counts and the
//     documents outbox. Per-event statements cost the server one execution each;
//     set-wise, a batch costs a handful. (Rows as JSON cost the server about twice
//     what column arrays do: json_to_recordset's parsing was half an upsert.)
//     The fold needs a single writer per projection version, which the runtime's
//     checkpoint lock provides; the guarded upserts keep even a second writer from
//     moving a row backwards.
//   - episode_count (published episodes) and catalog_categories_v1 (published
//     programs per category) move by the differences between the rows as the batch
//     found them and as it leaves them, which the fold knows exactly: an event
//     delivered again changes no row, hence no count. (Recounting from the rows, the
//     first version, cost a scan of every program of a category per batch: it grew
//     with the catalog.) Like the fold, this relies on the single writer.
//   - published_at is the time of the first publication, as in the command side's
//     editorial view; unpublishing, republishing and archiving keep it.
//   - Times come from the events (occurred_at, truncated to PostgreSQL's
//     microseconds), never from the clock, so a rebuild reproduces every row.
//   - With WithDocuments, each batch also records in OutboxTable which programs and
//     episodes it changed (only those whose rows the fold changed), in the same
//     transaction: the documents flusher (projections/documents) writes their Redis
//     documents from the committed rows. Without it (Redis off) nothing is recorded.
//   - The images of programs and episodes come from the asset streams through a
//     slot table of their own (ImagesTable; images.go says how), read and written
//     in the same two round trips as the rows.
package catalog

import (
	"context"
	"fmt"
	goruntime "runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/internal/pgarray"
	"github.com/mediamesh/mediamesh/projections/internal/streamcheck"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Name and Version identify the projection; every sink carries the version.
const (
	Name            = "catalog"
	Version         = 1
	ProgramsTable   = "catalog_programs_v1"
	EpisodesTable   = "catalog_episodes_v1"
	CategoriesTable = "catalog_categories_v1"
	// OutboxTable is the documents outbox (see WithDocuments). It is a queue, not a
	// read model, so Sinks does not list it; a rebuilt version needs its own.
	OutboxTable = "catalog_documents_outbox_v1"
)

// Statuses of programs and episodes.
const (
	StatusDraft       = "draft"
	StatusPublished   = "published"
	StatusUnpublished = "unpublished"
	StatusArchived    = "archived"
)

// Projection applies program-stream events to the catalog tables.
type Projection struct {
	codec     *events.Codec
	documents bool
}

// Option configures a Projection.
type Option func(*Projection)

// WithDocuments makes every batch record what it changed in OutboxTable for the
// documents flusher. Use it exactly when a flusher runs (Redis is configured):
// otherwise the outbox only grows.
func WithDocuments() Option { return func(p *Projection) { p.documents = true } }

// New returns the catalog projection decoding with codec (nil: events.NewCodec()).
func New(codec *events.Codec, opts ...Option) *Projection {
	if codec == nil {
		codec = events.NewCodec()
	}
	p := &Projection{codec: codec}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Name implements runtime.Projection.
func (*Projection) Name() string { return Name }

// Version implements runtime.Projection.
func (*Projection) Version() int { return Version }

// Sinks implements runtime.Projection.
func (*Projection) Sinks() []string {
	return []string{ProgramsTable, EpisodesTable, CategoriesTable, ImagesTable}
}

// program is a catalog_programs_v1 row as the fold sees it.
type program struct {
	ID           string
	Title        string
	Description  string
	Category     string
	Language     string
	Tags         []string
	ExternalID   *string
	Status       string
	PublishedAt  *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
	Version      int64
	EpisodeCount int

	dirty bool
	// loadedCategory and loadedStatus are the row before the batch ("" for a new
	// row).
	loadedCategory, loadedStatus string
}

// episode is a catalog_episodes_v1 row as the fold sees it.
type episode struct {
	ID              string
	ProgramID       string
	Title           string
	Number          int
	Season          int
	Description     string
	DurationSeconds int
	ExternalID      *string
	Status          string
	PublishedAt     *time.Time
	Version         int64

	dirty bool
	// loadedStatus is the status before the batch ("" for a new row).
	loadedStatus string
}

const (
	sqlLoadPrograms = `SELECT id::text, title, description, category, language, tags, external_id, status,
		published_at, created_at, updated_at, version, episode_count FROM catalog_programs_v1 WHERE id = ANY($1::uuid[])`
	sqlLoadEpisodes = `SELECT id::text, program_id::text, title, number, season, description, duration_seconds,
		external_id, status, published_at, version FROM catalog_episodes_v1 WHERE id = ANY($1::uuid[])`
	// The upserts leave images alone: the artwork slots own them (images.go). Tags
	// travel as one array literal per row.
	sqlUpsertPrograms = `INSERT INTO catalog_programs_v1 AS t
		(id, title, description, category, language, tags, external_id, status, published_at, created_at, updated_at, version, episode_count)
		SELECT id, title, description, category, language, tags::text[], external_id, status, published_at, created_at, updated_at,
			version, episode_count
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::bigint[], $13::int[])
			AS x(id, title, description, category, language, tags, external_id, status, published_at, created_at, updated_at,
			version, episode_count)
		ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, description = EXCLUDED.description, category = EXCLUDED.category,
			language = EXCLUDED.language, tags = EXCLUDED.tags, status = EXCLUDED.status, published_at = EXCLUDED.published_at,
			updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, episode_count = EXCLUDED.episode_count
		WHERE t.version < EXCLUDED.version`
	sqlUpsertEpisodes = `INSERT INTO catalog_episodes_v1 AS t
		(id, program_id, title, number, season, description, duration_seconds, external_id, status, published_at, version)
		SELECT id, program_id, title, number, season, description, duration_seconds, external_id, status, published_at, version
		FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::int[], $6::text[], $7::int[], $8::text[], $9::text[],
			$10::timestamptz[], $11::bigint[])
			AS x(id, program_id, title, number, season, description, duration_seconds, external_id, status, published_at, version)
		ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, number = EXCLUDED.number, season = EXCLUDED.season,
			description = EXCLUDED.description, duration_seconds = EXCLUDED.duration_seconds, status = EXCLUDED.status,
			published_at = EXCLUDED.published_at, version = EXCLUDED.version
		WHERE t.version < EXCLUDED.version AND t.program_id = EXCLUDED.program_id`
	// Category counts move by deltas; a category without a visible program has no
	// row (the CHECK keeps counts positive). The INSERT sees the rows as they were
	// before the statement, so it only adds categories that had none.
	sqlCategoryDeltas = `WITH d AS (
		    SELECT slug, delta FROM unnest($1::text[], $2::int[]) AS d(slug, delta)
		), removed AS (
		    DELETE FROM catalog_categories_v1 c USING d WHERE c.slug = d.slug AND c.program_count + d.delta <= 0
		), moved AS (
		    UPDATE catalog_categories_v1 c SET program_count = c.program_count + d.delta
		    FROM d WHERE c.slug = d.slug AND c.program_count + d.delta > 0
		)
		INSERT INTO catalog_categories_v1 (slug, program_count)
		SELECT slug, delta FROM d WHERE delta > 0 AND NOT EXISTS (SELECT 1 FROM catalog_categories_v1 c WHERE c.slug = d.slug)`
	sqlOutbox = `INSERT INTO catalog_documents_outbox_v1 (program_id, episode_id, all_episodes, position)
		SELECT p, NULLIF(e, '')::uuid, a, $4 FROM unnest($1::uuid[], $2::text[], $3::bool[]) AS x(p, e, a)`
)

// decoded is one event of a batch, decoded and checked.
type decoded struct {
	env events.Envelope
	ev  events.Event
}

// fold is the state of one batch: the rows it touches, as they are before the
// batch and as the events leave them.
type fold struct {
	programs map[string]*program
	episodes map[string]*episode
	// outbox: programs whose documents changed, their changed episodes, and the
	// programs whose every episode document must be rewritten.
	changedEpisodes map[string][]string
	allEpisodes     map[string]bool
	changedOrder    []string
	// Artwork (images.go): the slots the batch's asset events name, the rows whose
	// images column must be recomputed (new rows, changed slots), and the owners
	// (kind, id) whose images changed, in order.
	slots                        map[string]*slot
	imagePrograms, imageEpisodes map[string]bool
	artChanged                   [][2]string
	artSeen                      map[[2]string]bool
}

// Apply implements runtime.Projection.
func (p *Projection) Apply(ctx context.Context, tx pgx.Tx, batch []events.Envelope) error {
	decodedAll, err := p.decode(batch)
	if err != nil {
		return err
	}
	evs := make([]decoded, 0, len(batch))
	var programIDs, episodeIDs []string
	var slotKeys [3][]string // owner kinds, owner ids, kinds
	seenP, seenE, seenS := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, env := range batch {
		ev := decodedAll[i]
		if !handled(env.Type) {
			continue // other streams (episode and slot pointers, external ids)
		}
		evs = append(evs, decoded{env: env, ev: ev})
		if id := events.ProgramIDOf(ev); !seenP[id] {
			seenP[id] = true
			programIDs = append(programIDs, id)
		}
		epID := episodeIDOf(ev)
		if a, ok := assetOf(ev); ok {
			kind, owner := a.owner()
			if k := slotKey(kind, owner, a.Kind); !seenS[k] {
				seenS[k] = true
				slotKeys[0], slotKeys[1], slotKeys[2] = append(slotKeys[0], kind), append(slotKeys[1], owner), append(slotKeys[2], a.Kind)
			}
			epID = a.EpisodeID
		}
		if epID != "" && !seenE[epID] {
			seenE[epID] = true
			episodeIDs = append(episodeIDs, epID)
		}
	}
	if len(evs) == 0 {
		return nil
	}
	f, err := load(ctx, tx, programIDs, episodeIDs, slotKeys)
	if err != nil {
		return err
	}
	for _, d := range evs {
		f.apply(d)
	}
	f.markImages()
	return p.write(ctx, tx, f, maxPosition(batch))
}

// parallelDecode is the batch size from which Apply decodes on several cores.
const parallelDecode = 256

// decode decodes and checks every event of batch, in order; the first poison event
// (by position in the batch) fails it. Large batches are decoded by up to
// GOMAXPROCS goroutines: decoding is most of Apply's own CPU, and while it runs the
// database waits, so spreading it shortens every transaction.
func (p *Projection) decode(batch []events.Envelope) ([]events.Event, error) {
	out := make([]events.Event, len(batch))
	errs := make([]error, len(batch))
	one := func(i int) {
		env := batch[i]
		ev, err := p.codec.DecodeEnvelope(env)
		if err == nil {
			err = streamcheck.Check(env, ev)
		}
		if err == nil {
			err = checkAsset(env, ev)
		}
		out[i], errs[i] = ev, err
	}
	workers := min(goruntime.GOMAXPROCS(0), len(batch)/parallelDecode)
	if workers <= 1 {
		for i := range batch {
			one(i)
		}
	} else {
		var wg sync.WaitGroup
		chunk := (len(batch) + workers - 1) / workers
		for lo := 0; lo < len(batch); lo += chunk {
			hi := min(lo+chunk, len(batch))
			wg.Go(func() {
				for i := lo; i < hi; i++ {
					one(i)
				}
			})
		}
		wg.Wait()
	}
	for i, err := range errs {
		if err != nil {
			return nil, runtime.Poison(batch[i], err)
		}
	}
	return out, nil
}

// handled reports whether the catalog applies events of type t: its program
// streams' and its artwork's.
func handled(t string) bool {
	return events.IsProgramStreamType(t) || t == events.TypeAssetUploaded || t == events.TypeAssetProcessed
}

func episodeIDOf(ev events.Event) string {
	switch e := ev.(type) {
	case events.EpisodeAdded:
		return e.EpisodeID
	case events.EpisodeUpdated:
		return e.EpisodeID
	case events.EpisodePublished:
		return e.EpisodeID
	case events.EpisodeUnpublished:
		return e.EpisodeID
	case events.EpisodeArchived:
		return e.EpisodeID
	}
	return ""
}

// load reads the rows of the named programs and episodes, and the named artwork
// slots (owner kinds, owner ids, kinds), in one round trip.
func load(ctx context.Context, tx pgx.Tx, programIDs, episodeIDs []string, slotKeys [3][]string) (*fold, error) {
	f := &fold{
		programs:        make(map[string]*program, len(programIDs)),
		episodes:        make(map[string]*episode, len(episodeIDs)),
		changedEpisodes: map[string][]string{},
		allEpisodes:     map[string]bool{},
		slots:           map[string]*slot{},
		imagePrograms:   map[string]bool{},
		imageEpisodes:   map[string]bool{},
		artSeen:         map[[2]string]bool{},
	}
	b := &pgx.Batch{}
	b.Queue(sqlLoadPrograms, programIDs).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			r := &program{}
			if err := rows.Scan(&r.ID, &r.Title, &r.Description, &r.Category, &r.Language, &r.Tags, &r.ExternalID, &r.Status,
				&r.PublishedAt, &r.CreatedAt, &r.UpdatedAt, &r.Version, &r.EpisodeCount); err != nil {
				return err
			}
			r.loadedCategory, r.loadedStatus = r.Category, r.Status
			f.programs[r.ID] = r
		}
		return rows.Err()
	})
	if len(episodeIDs) > 0 {
		b.Queue(sqlLoadEpisodes, episodeIDs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				r := &episode{}
				if err := rows.Scan(&r.ID, &r.ProgramID, &r.Title, &r.Number, &r.Season, &r.Description, &r.DurationSeconds,
					&r.ExternalID, &r.Status, &r.PublishedAt, &r.Version); err != nil {
					return err
				}
				r.loadedStatus = r.Status
				f.episodes[r.ID] = r
			}
			return rows.Err()
		})
	}
	if len(slotKeys[0]) > 0 {
		b.Queue(sqlLoadSlots, slotKeys[0], slotKeys[1], slotKeys[2]).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				s := &slot{}
				if err := rows.Scan(&s.OwnerKind, &s.OwnerID, &s.Kind, &s.ProgramID, &s.AssetID, &s.Version, &s.UploadVersion,
					&s.Original, &s.Small, &s.Medium, &s.Large); err != nil {
					return err
				}
				f.slots[s.key()] = s
			}
			return rows.Err()
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("catalog: load rows: %w", err)
	}
	return f, nil
}

// pgTime is t as PostgreSQL stores it: microseconds, UTC.
func pgTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// markProgram records that the program's document changed; all says its every
// episode document did too.
func (f *fold) markProgram(id string, all bool) {
	if _, ok := f.changedEpisodes[id]; !ok {
		f.changedEpisodes[id] = nil
		f.changedOrder = append(f.changedOrder, id)
	}
	if all {
		f.allEpisodes[id] = true
	}
}

func (f *fold) markEpisode(programID, episodeID string) {
	f.markProgram(programID, false)
	if !slices.Contains(f.changedEpisodes[programID], episodeID) {
		f.changedEpisodes[programID] = append(f.changedEpisodes[programID], episodeID)
	}
}

// touch moves the program row to the event's version and time: every event of the
// stream does. It reports whether the event is new to the program row.
func (f *fold) touch(programID string, at time.Time, v int64) (*program, bool) {
	r := f.programs[programID]
	if r == nil || v <= r.Version {
		return r, false
	}
	r.Version, r.UpdatedAt, r.dirty = v, at, true
	f.markProgram(programID, false)
	return r, true
}

// apply folds one event onto the rows, behind the version guards.
func (f *fold) apply(d decoded) {
	at, v := pgTime(d.env.OccurredAt), d.env.Version
	switch e := d.ev.(type) {
	case events.ProgramCreated:
		if f.programs[e.ProgramID] != nil {
			return
		}
		tags := e.Tags
		if tags == nil {
			tags = []string{}
		}
		var ext *string
		if e.ExternalID != "" {
			ext = &e.ExternalID
		}
		f.programs[e.ProgramID] = &program{ID: e.ProgramID, Title: e.Title, Description: e.Description, Category: e.Category,
			Language: e.Language, Tags: tags, ExternalID: ext, Status: StatusDraft, CreatedAt: at, UpdatedAt: at, Version: v, dirty: true}
		f.markProgram(e.ProgramID, false)
		f.imagePrograms[e.ProgramID] = true // artwork applied before the row
	case events.ProgramUpdated:
		r, ok := f.touch(e.ProgramID, at, v)
		if !ok {
			return
		}
		set(&r.Title, e.Title)
		set(&r.Description, e.Description)
		set(&r.Category, e.Category)
		set(&r.Language, e.Language)
		if e.Tags != nil {
			r.Tags = append([]string{}, *e.Tags...)
		}
	case events.ProgramPublished:
		f.programStatus(e.ProgramID, StatusPublished, at, v)
	case events.ProgramUnpublished:
		f.programStatus(e.ProgramID, StatusUnpublished, at, v)
	case events.ProgramArchived:
		f.programStatus(e.ProgramID, StatusArchived, at, v)
	case events.EpisodeAdded:
		if f.episodes[e.EpisodeID] == nil {
			season := e.Season
			if season == 0 {
				season = 1
			}
			var ext *string
			if e.ExternalID != "" {
				ext = &e.ExternalID
			}
			f.episodes[e.EpisodeID] = &episode{ID: e.EpisodeID, ProgramID: e.ProgramID, Title: e.Title, Number: e.Number, Season: season,
				Description: e.Description, DurationSeconds: e.DurationSeconds, ExternalID: ext, Status: StatusDraft, Version: v, dirty: true}
			f.markEpisode(e.ProgramID, e.EpisodeID)
			f.imageEpisodes[e.EpisodeID] = true
		}
		f.touch(e.ProgramID, at, v)
	case events.EpisodeUpdated:
		if r := f.episodeFor(e.ProgramID, e.EpisodeID, v); r != nil {
			set(&r.Title, e.Title)
			set(&r.Number, e.Number)
			set(&r.Season, e.Season)
			set(&r.Description, e.Description)
			set(&r.DurationSeconds, e.DurationSeconds)
		}
		f.touch(e.ProgramID, at, v)
	case events.EpisodePublished:
		f.episodeStatus(e.ProgramID, e.EpisodeID, StatusPublished, at, v)
	case events.EpisodeUnpublished:
		f.episodeStatus(e.ProgramID, e.EpisodeID, StatusUnpublished, at, v)
	case events.EpisodeArchived:
		f.episodeStatus(e.ProgramID, e.EpisodeID, StatusArchived, at, v)
	case events.AssetUploaded, events.AssetProcessed:
		f.applyAsset(d)
	}
}

func (f *fold) programStatus(id, status string, at time.Time, v int64) {
	r, ok := f.touch(id, at, v)
	if !ok {
		return
	}
	r.Status = status
	if status == StatusPublished && r.PublishedAt == nil {
		r.PublishedAt = &at
	}
	f.markProgram(id, true)
}

// episodeFor returns the episode row an event at version v applies to (marking it
// changed), or nil when it is absent, of another program, or already at v.
func (f *fold) episodeFor(programID, episodeID string, v int64) *episode {
	r := f.episodes[episodeID]
	if r == nil || r.ProgramID != programID || v <= r.Version {
		return nil
	}
	r.Version, r.dirty = v, true
	f.markEpisode(programID, episodeID)
	return r
}

func (f *fold) episodeStatus(programID, episodeID, status string, at time.Time, v int64) {
	if r := f.episodeFor(programID, episodeID, v); r != nil {
		r.Status = status
		if status == StatusPublished && r.PublishedAt == nil {
			r.PublishedAt = &at
		}
	}
	f.touch(programID, at, v)
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// counts moves each changed program's episode_count by its episodes' visibility
// changes, and returns the category deltas of the programs' visibility changes
// (slugs sorted, zero deltas left out).
func (f *fold) counts() (slugs []string, deltas []int) {
	for _, e := range f.episodes {
		if !e.dirty {
			continue
		}
		d := b2i(e.Status == StatusPublished) - b2i(e.loadedStatus == StatusPublished)
		if p := f.programs[e.ProgramID]; d != 0 && p != nil {
			p.EpisodeCount += d
			p.dirty = true
		}
	}
	byCategory := map[string]int{}
	for _, p := range f.programs {
		if !p.dirty {
			continue
		}
		if p.loadedStatus == StatusPublished {
			byCategory[p.loadedCategory]--
		}
		if p.Status == StatusPublished {
			byCategory[p.Category]++
		}
	}
	for slug, d := range byCategory {
		if d != 0 {
			slugs = append(slugs, slug)
		}
	}
	sort.Strings(slugs)
	for _, slug := range slugs {
		deltas = append(deltas, byCategory[slug])
	}
	return slugs, deltas
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// write sends the changed slots and rows, their images, the category deltas and
// the outbox in one round trip.
func (p *Projection) write(ctx context.Context, tx pgx.Tx, f *fold, position int64) error {
	slugs, deltas := f.counts()
	var progs []*program
	for _, r := range f.programs {
		if r.dirty {
			progs = append(progs, r)
		}
	}
	var eps []*episode
	for _, r := range f.episodes {
		if r.dirty {
			eps = append(eps, r)
		}
	}
	slots := f.sortedSlots()
	if len(progs) == 0 && len(eps) == 0 && len(slots) == 0 {
		return nil // every event was a redelivery
	}
	// A fixed row order: two writers (without the runtime's lock) cannot deadlock.
	slices.SortFunc(progs, func(a, b *program) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(eps, func(a, b *episode) int { return strings.Compare(a.ID, b.ID) })
	b := &pgx.Batch{}
	if len(slots) > 0 {
		b.Queue(sqlUpsertSlots, slotColumns(slots)...)
	}
	if len(progs) > 0 {
		b.Queue(sqlUpsertPrograms, programColumns(progs)...)
	}
	if len(eps) > 0 {
		b.Queue(sqlUpsertEpisodes, episodeColumns(eps)...)
	}
	// After the slots and the rows: a row inserted above gets its waiting artwork.
	if len(f.imagePrograms) > 0 {
		b.Queue(sqlProgramImages, sortedKeys(f.imagePrograms))
	}
	if len(f.imageEpisodes) > 0 {
		b.Queue(sqlEpisodeImages, sortedKeys(f.imageEpisodes))
	}
	if len(slugs) > 0 {
		b.Queue(sqlCategoryDeltas, slugs, deltas)
	}
	if p.documents && len(f.changedOrder) > 0 {
		var pids, eids []string
		var all []bool
		for _, pid := range f.changedOrder {
			pids, eids, all = append(pids, pid), append(eids, ""), append(all, f.allEpisodes[pid])
			for _, eid := range f.changedEpisodes[pid] {
				pids, eids, all = append(pids, pid), append(eids, eid), append(all, false)
			}
		}
		b.Queue(sqlOutbox, pids, eids, all, position)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("catalog: write %d programs, %d episodes, %d artwork slots: %w", len(progs), len(eps), len(slots), err)
	}
	return nil
}

// programColumns returns the upsert's column arrays of rows.
func programColumns(rows []*program) []any {
	n := len(rows)
	ids, titles, descs, cats, langs, tags := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	exts, statuses := make([]pgtype.Text, n), make([]string, n)
	pubs, created, updated := make([]pgtype.Timestamptz, n), make([]time.Time, n), make([]time.Time, n)
	versions, counts := make([]int64, n), make([]int32, n)
	for i, r := range rows {
		ids[i], titles[i], descs[i], cats[i], langs[i], tags[i] = r.ID, r.Title, r.Description, r.Category, r.Language, pgarray.TextLiteral(r.Tags)
		exts[i], statuses[i] = text(r.ExternalID), r.Status
		pubs[i], created[i], updated[i] = timestamptz(r.PublishedAt), r.CreatedAt, r.UpdatedAt
		versions[i], counts[i] = r.Version, int32(r.EpisodeCount)
	}
	return []any{ids, titles, descs, cats, langs, tags, exts, statuses, pubs, created, updated, versions, counts}
}

// episodeColumns returns the upsert's column arrays of rows.
func episodeColumns(rows []*episode) []any {
	n := len(rows)
	ids, pids, titles, descs, statuses := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	numbers, seasons, durations := make([]int32, n), make([]int32, n), make([]int32, n)
	exts, pubs, versions := make([]pgtype.Text, n), make([]pgtype.Timestamptz, n), make([]int64, n)
	for i, r := range rows {
		ids[i], pids[i], titles[i], descs[i], statuses[i] = r.ID, r.ProgramID, r.Title, r.Description, r.Status
		numbers[i], seasons[i], durations[i] = int32(r.Number), int32(r.Season), int32(r.DurationSeconds)
		exts[i], pubs[i], versions[i] = text(r.ExternalID), timestamptz(r.PublishedAt), r.Version
	}
	return []any{ids, pids, titles, numbers, seasons, descs, durations, exts, statuses, pubs, versions}
}

func text(s *string) pgtype.Text {
	if s == nil {
		return pgtype.Text{}
	}
	return pgtype.Text{String: *s, Valid: true}
}

func timestamptz(t *time.Time) pgtype.Timestamptz {
	if t == nil {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: *t, Valid: true}
}

// maxPosition is the highest position of batch.
func maxPosition(batch []events.Envelope) int64 {
	var m int64
	for _, e := range batch {
		m = max(m, e.Position)
	}
	return m
}
