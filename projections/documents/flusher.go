package documents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Options tune a Flusher; zero values take the defaults.
type Options struct {
	// ChunkSize is the most outbox entries one flush round takes (default 2,000).
	ChunkSize int
	// Poll is how often the flusher looks at the outbox without a notification
	// (default 1 s): a safety net for a missed one.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after a failure (50 ms, 5 s).
	MinBackoff, MaxBackoff time.Duration
	// Logger receives retries (default slog.Default()).
	Logger *slog.Logger
	// Version is the catalog projection version whose tables, outbox and
	// checkpoint the flusher reads (default catalog.Version). A rebuild runs a
	// flusher of the new version beside the serving one, with a store writing that
	// version's key space (mm:catalog:v2:…).
	Version int
	// Freshness, when set, is called for every program document a flush changes
	// while this version serves, with the program row's updated_at: the time its
	// latest event was recorded (catalog rows take their times from the events).
	// The composition root records it as mediamesh_freshness_seconds{sink="redis"}.
	// A flush that resynced (Redis lost its data, or a first start) and a version
	// that does not serve (a rebuild's) record nothing: their documents are old by
	// design, and measure the resync or the replay, not the pipeline.
	Freshness func(recordedAt time.Time)
}

func (o Options) withDefaults() Options {
	if o.ChunkSize <= 0 {
		o.ChunkSize = 2000
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 50 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Second, o.MinBackoff)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Version <= 0 {
		o.Version = catalog.Version
	}
	return o
}

// tables are the catalog tables of one projection version.
type tables struct {
	programs, episodes, outbox string
}

func tablesOf(v int) tables {
	return tables{
		programs: fmt.Sprintf("catalog_programs_v%d", v),
		episodes: fmt.Sprintf("catalog_episodes_v%d", v),
		outbox:   fmt.Sprintf("catalog_documents_outbox_v%d", v),
	}
}

// Flusher writes the documents of what the catalog projection changed, from the
// catalog tables, and deletes the outbox entries it wrote (see the package
// documentation). Run keeps it going; Flush is one pass.
//
// One flusher per catalog version works at a time: Run holds a PostgreSQL session
// advisory lock on its own connection, and a second Run waits for it. (Two
// flushers would still write correct documents, guards included, but twice.)
type Flusher struct {
	pool  *pgxpool.Pool
	store Store
	opts  Options
	// lockKey is the advisory lock of this catalog version's flusher.
	lockKey int64
	t       tables
}

// New returns a flusher of the catalog projection's current version.
func New(pool *pgxpool.Pool, store Store, opts Options) (*Flusher, error) {
	if pool == nil {
		return nil, errors.New("documents flusher: nil pool")
	}
	if store == nil {
		return nil, errors.New("documents flusher: nil store")
	}
	opts = opts.withDefaults()
	h := fnv.New64a()
	fmt.Fprintf(h, "mediamesh.documents.%s.v%d", catalog.Name, opts.Version)
	return &Flusher{pool: pool, store: store, opts: opts, lockKey: int64(h.Sum64() >> 1), t: tablesOf(opts.Version)}, nil
}

// Result counts what a Flush did.
type Result struct {
	// Entries is the number of outbox entries written and deleted.
	Entries int
	// Programs and Episodes count the documents that changed.
	Programs, Episodes int
	// Position is the position Redis includes after the flush.
	Position int64
	// Resynced is true when the store had lost its data and every document was
	// queued again.
	Resynced bool
}

// Run flushes until ctx ends, then returns nil: after every commit of the catalog
// projection (it LISTENs on runtime.NotifyChannel), and every Options.Poll. Store
// and database failures are retried with backoff; nothing is lost meanwhile.
func (f *Flusher) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := f.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			attempt = 0
		}
		f.opts.Logger.Warn("documents flusher failed, retrying", "error", err, "attempt", attempt+1)
		if !f.sleep(ctx, attempt) {
			return nil
		}
	}
}

// session holds the lock connection and flushes on it until something fails.
func (f *Flusher) session(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, f.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("flusher connection: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx)) // ends the session: releases the lock
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, f.lockKey); err != nil {
		return fmt.Errorf("flusher lock: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{runtime.NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("flusher listen: %w", err)
	}
	failures := 0
	for {
		if _, err := f.flush(ctx, conn); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if conn.IsClosed() {
				return err
			}
			// A store failure (Redis down): keep the lock, try again later.
			f.opts.Logger.Warn("documents flush failed, retrying", "error", err, "attempt", failures+1)
			if !f.sleep(ctx, failures) {
				return nil
			}
			failures++
			continue
		}
		failures = 0
		if err := f.wait(ctx, conn); err != nil {
			return err
		}
	}
}

// wait returns after a catalog commit notification or Options.Poll.
func (f *Flusher) wait(ctx context.Context, conn *pgx.Conn) error {
	deadline := time.Now().Add(f.opts.Poll)
	for {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				return nil // the poll interval passed
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("flusher wait: %w", err)
		}
		var msg runtime.Notification
		if json.Unmarshal([]byte(n.Payload), &msg) == nil && msg.Name == catalog.Name && msg.Version == f.opts.Version {
			return nil
		}
	}
}

// Flush writes everything the outbox holds, in rounds of Options.ChunkSize
// entries, and returns what it did. It takes no lock: tests and tools call it; a
// deployment runs Run.
func (f *Flusher) Flush(ctx context.Context) (Result, error) {
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("flush: %w", err)
	}
	defer conn.Release()
	return f.flush(ctx, conn.Conn())
}

func (f *Flusher) flush(ctx context.Context, conn *pgx.Conn) (Result, error) {
	var res Result
	pos, ok, err := f.store.Position(ctx)
	if err != nil {
		return res, fmt.Errorf("flush: read position: %w", err)
	}
	initial := !ok
	if initial {
		// Never written, or Redis lost its data: queue every document again.
		if err := f.resync(ctx, conn); err != nil {
			return res, err
		}
		res.Resynced = true
	}
	res.Position = pos
	for {
		r, err := f.round(ctx, conn, res.Position, initial, !res.Resynced)
		res.Entries += r.Entries
		res.Programs += r.Programs
		res.Episodes += r.Episodes
		if err != nil {
			return res, err
		}
		res.Position = r.Position
		initial = false
		if r.lost {
			// The position vanished during the round: Redis lost data again.
			if err := f.resync(ctx, conn); err != nil {
				return res, err
			}
			res.Resynced, initial = true, true
			continue
		}
		if r.drained {
			return res, nil
		}
	}
}

// Resync queues every program's documents (and all their episodes') for the next
// flush: for a Redis that lost its data, or a catalog that had documents off.
func (f *Flusher) Resync(ctx context.Context) error {
	conn, err := f.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	defer conn.Release()
	return f.resync(ctx, conn.Conn())
}

func (f *Flusher) resync(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `INSERT INTO `+f.t.outbox+` (program_id, all_episodes, position)
		SELECT id, true, COALESCE((SELECT position FROM projection_checkpoints WHERE name = $1 AND version = $2), 0)
		FROM `+f.t.programs+` ORDER BY id`, catalog.Name, f.opts.Version)
	if err != nil {
		return fmt.Errorf("resync documents: %w", err)
	}
	return nil
}

// roundResult is one round of a flush.
type roundResult struct {
	Result
	drained bool // the outbox held fewer entries than a chunk
	lost    bool // the store's position vanished
}

// entry is one outbox row.
type entry struct {
	id        int64
	programID string
	episodeID *string
	all       bool
	position  int64
}

// round writes one chunk of outbox entries and deletes them, in one transaction
// that also reads the rows (so the documents are at least as new as the entries).
func (f *Flusher) round(ctx context.Context, conn *pgx.Conn, announced int64, initial, measure bool) (roundResult, error) {
	var rr roundResult
	rr.Position = announced
	tx, err := conn.Begin(ctx)
	if err != nil {
		return rr, fmt.Errorf("flush: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op

	// The checkpoint first: every batch up to it has committed its entries, so the
	// entries read next include all of them.
	var (
		checkpoint int64
		serving    bool
	)
	err = tx.QueryRow(ctx, `SELECT position, serving FROM projection_checkpoints WHERE name = $1 AND version = $2`,
		catalog.Name, f.opts.Version).Scan(&checkpoint, &serving)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return rr, fmt.Errorf("flush: read checkpoint: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT id, program_id::text, episode_id::text, all_episodes, position
		FROM `+f.t.outbox+` ORDER BY id LIMIT $1`, f.opts.ChunkSize)
	if err != nil {
		return rr, fmt.Errorf("flush: read outbox: %w", err)
	}
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (entry, error) {
		var e entry
		err := row.Scan(&e.id, &e.programID, &e.episodeID, &e.all, &e.position)
		return e, err
	})
	if err != nil {
		return rr, fmt.Errorf("flush: read outbox: %w", err)
	}
	rr.drained = len(entries) < f.opts.ChunkSize
	notice := Notice{Programs: []string{}, Episodes: []string{}, Position: announced}
	if rr.drained {
		notice.Position = max(announced, checkpoint)
	}
	if len(entries) == 0 {
		if err := tx.Commit(ctx); err != nil {
			return rr, fmt.Errorf("flush: commit: %w", err)
		}
		if notice.Position == announced && !initial {
			return rr, nil
		}
		ok, err := f.store.Announce(ctx, notice, initial)
		if err != nil {
			return rr, fmt.Errorf("flush: announce: %w", err)
		}
		rr.lost = !ok
		rr.Position = notice.Position
		return rr, nil
	}

	plan, err := planWrites(ctx, tx, f.t, entries)
	if err != nil {
		return rr, err
	}
	// Episodes first, programs last: a reader that finds a program document at
	// version V finds its episodes at least as new.
	if err := f.write(ctx, plan.episodes, &notice, &rr, nil); err != nil {
		return rr, err
	}
	var recorded map[string]time.Time
	if measure && serving && f.opts.Freshness != nil {
		recorded = plan.recorded
	}
	if err := f.write(ctx, plan.programs, &notice, &rr, recorded); err != nil {
		return rr, err
	}
	ids := make([]int64, len(entries))
	for i, e := range entries {
		ids[i] = e.id
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+f.t.outbox+` WHERE id = ANY($1)`, ids); err != nil {
		return rr, fmt.Errorf("flush: delete outbox entries: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return rr, fmt.Errorf("flush: commit: %w", err)
	}
	rr.Entries = len(entries)
	if len(notice.Programs) > 0 || notice.Position != announced || initial {
		ok, err := f.store.Announce(ctx, notice, initial)
		if err != nil {
			return rr, fmt.Errorf("flush: announce: %w", err)
		}
		rr.lost = !ok
	}
	rr.Position = notice.Position
	return rr, nil
}

// write stores writes and adds what changed to the notice; a changed program
// document found in recorded reports its freshness.
func (f *Flusher) write(ctx context.Context, writes []Write, n *Notice, rr *roundResult, recorded map[string]time.Time) error {
	if len(writes) == 0 {
		return nil
	}
	changed, err := f.store.Write(ctx, writes)
	if err != nil {
		return fmt.Errorf("flush: write %d documents: %w", len(writes), err)
	}
	for i, w := range writes {
		if !changed[i] {
			continue
		}
		switch w.Kind {
		case KindProgram:
			n.Browse, n.Search = true, true
			rr.Programs++
			n.Programs = appendOnce(n.Programs, w.ID)
			if at, ok := recorded[w.ID]; ok {
				f.opts.Freshness(at)
			}
		case KindEpisodes:
			n.Programs = appendOnce(n.Programs, w.ID)
		case KindEpisode:
			rr.Episodes++
			n.Episodes = append(n.Episodes, w.ID)
		}
	}
	return nil
}

func appendOnce(ids []string, id string) []string {
	if slices.Contains(ids, id) {
		return ids
	}
	return append(ids, id)
}

// plan is the writes of one round: episode documents and lists, then programs,
// and when each program's latest event was recorded (its row's updated_at).
type plan struct {
	episodes, programs []Write
	recorded           map[string]time.Time
}

type programRow struct {
	id, title, description, category, language, status string
	tags                                               []string
	publishedAt                                        *time.Time
	episodeCount                                       int
	images                                             []byte
	version                                            int64
	updatedAt                                          time.Time
}

type episodeRow struct {
	id, programID, title, description, status string
	number, season, durationSeconds           int
	publishedAt                               *time.Time
	images                                    []byte
}

// planWrites reads the rows of the entries' programs and derives their documents.
func planWrites(ctx context.Context, tx pgx.Tx, t tables, entries []entry) (plan, error) {
	type scope struct {
		guard    int64
		all      bool
		episodes []string
	}
	scopes := map[string]*scope{}
	var order []string
	for _, e := range entries {
		s := scopes[e.programID]
		if s == nil {
			s = &scope{}
			scopes[e.programID] = s
			order = append(order, e.programID)
		}
		s.guard = max(s.guard, e.id)
		s.all = s.all || e.all
		if e.episodeID != nil && !slices.Contains(s.episodes, *e.episodeID) {
			s.episodes = append(s.episodes, *e.episodeID)
		}
	}
	sort.Strings(order)

	progs := map[string]*programRow{}
	eps := map[string][]*episodeRow{}
	b := &pgx.Batch{}
	b.Queue(`SELECT id::text, title, description, category, language, tags, status, published_at, episode_count, images, version, updated_at
		FROM `+t.programs+` WHERE id = ANY($1::uuid[])`, order).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			r := &programRow{}
			if err := rows.Scan(&r.id, &r.title, &r.description, &r.category, &r.language, &r.tags, &r.status, &r.publishedAt,
				&r.episodeCount, &r.images, &r.version, &r.updatedAt); err != nil {
				return err
			}
			progs[r.id] = r
		}
		return rows.Err()
	})
	b.Queue(`SELECT id::text, program_id::text, title, description, status, number, season, duration_seconds, published_at, images
		FROM `+t.episodes+` WHERE program_id = ANY($1::uuid[]) ORDER BY program_id, season, number, id`, order).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			r := &episodeRow{}
			if err := rows.Scan(&r.id, &r.programID, &r.title, &r.description, &r.status, &r.number, &r.season, &r.durationSeconds,
				&r.publishedAt, &r.images); err != nil {
				return err
			}
			eps[r.programID] = append(eps[r.programID], r)
		}
		return rows.Err()
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return plan{}, fmt.Errorf("flush: read catalog rows: %w", err)
	}

	out := plan{recorded: make(map[string]time.Time, len(progs))}
	for id, p := range progs {
		out.recorded[id] = p.updatedAt
	}
	for _, pid := range order {
		s := scopes[pid]
		p := progs[pid]
		visible := p != nil && p.status == catalog.StatusPublished
		var list []Episode
		for _, e := range eps[pid] {
			doc, show := episodeDoc(e, visible)
			if show {
				list = append(list, doc)
			}
			if !s.all && !slices.Contains(s.episodes, e.id) {
				continue
			}
			w := Write{Kind: KindEpisode, ID: e.id, Guard: s.guard}
			if show {
				v, err := json.Marshal(doc)
				if err != nil {
					return plan{}, fmt.Errorf("flush: encode episode %s: %w", e.id, err)
				}
				w.Value = v
			}
			out.episodes = append(out.episodes, w)
		}
		listW := Write{Kind: KindEpisodes, ID: pid, Guard: s.guard}
		progW := Write{Kind: KindProgram, ID: pid, Guard: s.guard}
		if visible {
			if list == nil {
				list = []Episode{}
			}
			v, err := json.Marshal(list)
			if err != nil {
				return plan{}, fmt.Errorf("flush: encode episodes of %s: %w", pid, err)
			}
			listW.Value = v
			if progW.Value, err = json.Marshal(programDoc(p)); err != nil {
				return plan{}, fmt.Errorf("flush: encode program %s: %w", pid, err)
			}
		}
		out.episodes = append(out.episodes, listW)
		out.programs = append(out.programs, progW)
	}
	return out, nil
}

// images returns a stored images object, or {} when there is none.
func images(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage(`{}`)
	}
	return json.RawMessage(b)
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func programDoc(p *programRow) Program {
	tags := p.tags
	if tags == nil {
		tags = []string{}
	}
	return Program{ID: p.id, Title: p.title, Description: p.description, Category: p.category, Language: p.language, Tags: tags,
		PublishedAt: utc(p.publishedAt), EpisodeCount: p.episodeCount, Images: images(p.images), Version: p.version}
}

// episodeDoc returns an episode's document and whether it is visible (its program
// is, and it is published).
func episodeDoc(e *episodeRow, programVisible bool) (Episode, bool) {
	if !programVisible || e.status != catalog.StatusPublished {
		return Episode{}, false
	}
	return Episode{ID: e.id, ProgramID: e.programID, Title: e.title, Number: e.number, Season: e.season, Description: e.description,
		DurationSeconds: e.durationSeconds, PublishedAt: utc(e.publishedAt), Images: images(e.images)}, true
}

// Status is what ops see of the documents sink.
type Status struct {
	// Position is the global position up to which Redis holds every catalog change
	// (0 when never flushed, or when Redis lost its data).
	Position int64 `json:"position"`
	// Pending counts the outbox entries waiting to be written.
	Pending int64 `json:"pending"`
}

// Status reads the recorded position and the outbox size.
func (f *Flusher) Status(ctx context.Context) (Status, error) {
	var st Status
	pos, _, err := f.store.Position(ctx)
	if err != nil {
		return st, fmt.Errorf("documents status: %w", err)
	}
	st.Position = pos
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM `+f.t.outbox).Scan(&st.Pending); err != nil {
		return st, fmt.Errorf("documents status: %w", err)
	}
	return st, nil
}

// sleep waits the attempt's backoff with jitter; false if ctx ended.
func (f *Flusher) sleep(ctx context.Context, attempt int) bool {
	d := f.opts.MinBackoff << min(attempt, 20)
	if d <= 0 || d > f.opts.MaxBackoff {
		d = f.opts.MaxBackoff
	}
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
