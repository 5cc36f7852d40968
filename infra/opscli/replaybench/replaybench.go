// Package replaybench is `mediamesh bench replay`: a million events rebuilt into
// the catalog projection through the projection manager, against COPY of the
// same rows as the baseline.
package replaybench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/infra/bench"
	pgstore "github.com/mediamesh/mediamesh/infra/eventstore/postgres"
	"github.com/mediamesh/mediamesh/infra/opscli"
	"github.com/mediamesh/mediamesh/projections/catalog"
	"github.com/mediamesh/mediamesh/projections/rebuild"
)

// Target of the issue "Ops", point 6: a million events rebuilt in a minute.
const targetReplaySeconds = 60

// Options tune Run; zero values take the defaults.
type Options struct {
	// Events is the size of the generated history (default 1,000,000).
	Events int
	// BatchSize is the rebuild's replay batch size (default the Manager's).
	BatchSize int
	// Progress receives one line per phase (default: nowhere).
	Progress io.Writer
	// Logger receives the projection manager's logs (default: discarded).
	Logger *slog.Logger
}

// eventsPerProgram is the length of one generated program's life (see lifeOf).
const eventsPerProgram = 25

// Run is `mediamesh bench replay` on pool, a freshly migrated scratch
// database: it writes a history of o.Events catalog events straight into the
// PostgreSQL event store's table with COPY (programs of 25 events each: created,
// updated, ten episodes added and published, two episode updates, published;
// interleaved 64 programs at a time, as concurrent editors would write them), marks
// catalog version 1 as serving and caught up, and then measures:
//
//   - replay: a blue/green rebuild of the catalog through the projection manager,
//     from StartRebuild to the switch: claim, sink creation, replay of the whole
//     log from position 0 through the catalog projection in large batches, and the
//     atomic cut-over; in events per second, with the target duration_s <= 60;
//   - its baseline copy_rows: COPY FROM of exactly the rows the rebuild produced
//     (programs, episodes, categories, binary format, into tables with the same
//     indexes), the fastest PostgreSQL can hold that read model, expressed per
//     event of the history so that ratio compares like with like.
func Run(ctx context.Context, pool *pgxpool.Pool, o Options) ([]bench.Result, error) {
	if o.Events <= 0 {
		o.Events = 1_000_000
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Progress, "replay: "+format+"\n", args...) }

	start := time.Now()
	n, err := writeHistory(ctx, pool, o.Events)
	if err != nil {
		return nil, fmt.Errorf("bench replay: write history: %w", err)
	}
	say("wrote %d events with COPY in %.1f s", n, time.Since(start).Seconds())
	store := pgstore.New(pool)
	head, err := store.HeadPosition(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, version, position, serving) VALUES ($1, 1, $2, true)`,
		catalog.Name, head); err != nil {
		return nil, fmt.Errorf("bench replay: serving checkpoint: %w", err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE eventstore_events`); err != nil {
		return nil, fmt.Errorf("bench replay: vacuum: %w", err)
	}

	def, err := rebuild.Rebuildable(pool, catalog.New(nil), nil)
	if err != nil {
		return nil, err
	}
	counter, err := opscli.NewEventCounter(pool)
	if err != nil {
		return nil, err
	}
	m, err := rebuild.New(pool, store, []rebuild.Definition{def}, rebuild.Options{
		ReplayBatchSize: o.BatchSize, Counter: counter, Logger: o.Logger,
		Poll: 100 * time.Millisecond, ProgressEvery: 250 * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	defer func() {
		cancel()
		<-done
	}()

	say("rebuilding the catalog from position 0")
	start = time.Now()
	if _, err := m.StartRebuild(ctx, catalog.Name); err != nil {
		return nil, err
	}
	var p rebuild.Progress
	lastSaid := time.Now()
	for {
		if p, err = m.Progress(ctx, catalog.Name); err != nil {
			return nil, err
		}
		if p.Status == rebuild.RebuildFailed {
			return nil, fmt.Errorf("bench replay: rebuild failed: %s", p.Error)
		}
		if p.Status == rebuild.RebuildCompleted {
			break
		}
		if time.Since(lastSaid) >= 5*time.Second {
			say("%d of %d events", p.Processed, p.Total)
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	say("rebuilt %d events in %.1f s", p.Processed, elapsed.Seconds())
	if p.Processed != int64(n) {
		return nil, fmt.Errorf("bench replay: the rebuild applied %d events of %d", p.Processed, n)
	}

	rows, copyDur, err := copyBaseline(ctx, pool, p.ToVersion)
	if err != nil {
		return nil, fmt.Errorf("bench replay: baseline: %w", err)
	}
	say("COPY of the same %d rows in %.2f s", rows, copyDur.Seconds())

	r := bench.Measure("replay", "events", bench.Stats{Units: int64(n), Elapsed: elapsed})
	base := bench.Measure("copy_rows", "events", bench.Stats{Units: int64(n), Elapsed: copyDur})
	r.SetBaseline(bench.BaselineOf(base))
	r.AddTarget("duration_s", bench.AtMost, targetReplaySeconds)
	batch := o.BatchSize
	if batch <= 0 {
		batch = 5000
	}
	r.AddNote(fmt.Sprintf("blue/green rebuild of the catalog (programs, episodes, categories) from %d events of %d programs, "+
		"batches of %d, from StartRebuild to the switch; baseline: COPY FROM (binary) of the %d resulting rows into tables with the same indexes, "+
		"per event of the history", n, n/eventsPerProgram, batch, rows))
	return []bench.Result{r}, nil
}

// writeHistory COPYs n generated events into eventstore_events, at most
// pgstore.MaxAppendEvents per transaction: like an append, one transaction's events
// take positions (xid << 20) | ordinal, so the global log reads them in order.
func writeHistory(ctx context.Context, pool *pgxpool.Pool, n int) (int, error) {
	gen := newHistory(n)
	written := 0
	for written < n {
		chunk := min(n-written, pgstore.MaxAppendEvents)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var xid int64
			if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&xid); err != nil {
				return err
			}
			src := &historySource{gen: gen, left: chunk, base: xid << 20}
			copied, err := tx.CopyFrom(ctx, pgx.Identifier{"eventstore_events"},
				[]string{"position", "event_id", "stream_id", "version", "type", "data", "metadata", "occurred_at"}, src)
			if err != nil {
				return err
			}
			if copied != int64(chunk) {
				return fmt.Errorf("copied %d of %d events", copied, chunk)
			}
			return nil
		})
		if err != nil {
			return written, err
		}
		written += chunk
	}
	if _, err := pool.Exec(ctx, `INSERT INTO eventstore_streams (stream_id, version)
		SELECT stream_id, max(version) FROM eventstore_events GROUP BY stream_id
		ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version`); err != nil {
		return written, fmt.Errorf("stream versions: %w", err)
	}
	return written, nil
}

// history generates program lives, interleaved a window of programs at a time.
type history struct {
	codec   *events.Codec
	left    int
	next    int // next program number
	active  []*life
	turn    int
	eventNo uint64
	at      time.Time
}

// life is one program's remaining events.
type life struct {
	id     string
	stream string
	evs    []events.Event
	ver    int64
}

const window = 64

func newHistory(n int) *history {
	return &history{codec: events.NewCodec(), left: n, at: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func uuidOf(kind byte, n uint64) string {
	return fmt.Sprintf("0190d5a0-%04x-7%03x-8000-%012x", kind, (n>>48)&0xfff, n&0xffffffffffff)
}

func ptr[T any](v T) *T { return &v }

// lifeOf is program i's life (eventsPerProgram events).
func lifeOf(i int) *life {
	id := uuidOf(1, uint64(i))
	cats := []string{"drama", "comedy", "news", "sport", "kids", "documentary"}
	langs := []string{"en", "sv", "de", "fr"}
	l := &life{id: id, stream: events.ProgramStreamID(id)}
	l.evs = append(l.evs,
		events.ProgramCreated{ProgramID: id, Title: fmt.Sprintf("Program %d", i), Description: "A generated program.",
			Category: cats[i%len(cats)], Language: langs[i%len(langs)], Tags: []string{"generated", cats[(i+1)%len(cats)]},
			ExternalID: fmt.Sprintf("bench-%d", i)},
		events.ProgramUpdated{ProgramID: id, Title: ptr(fmt.Sprintf("Program %d (remastered)", i))})
	eps := make([]string, 10)
	for e := range eps {
		eps[e] = uuidOf(2, uint64(i)*16+uint64(e))
		l.evs = append(l.evs, events.EpisodeAdded{ProgramID: id, EpisodeID: eps[e], Title: fmt.Sprintf("Episode %d", e+1),
			Number: e%5 + 1, Season: e/5 + 1, Description: "A generated episode.", DurationSeconds: 1800 + 60*e})
	}
	for e := range eps {
		l.evs = append(l.evs, events.EpisodePublished{ProgramID: id, EpisodeID: eps[e]})
	}
	l.evs = append(l.evs,
		events.EpisodeUpdated{ProgramID: id, EpisodeID: eps[0], Title: ptr("Pilot")},
		events.EpisodeUpdated{ProgramID: id, EpisodeID: eps[9], DurationSeconds: ptr(3600)},
		events.ProgramPublished{ProgramID: id})
	return l
}

// nextEvent returns the next event of the history, or false when it is complete.
func (h *history) nextEvent() (*life, events.Event, bool) {
	if h.left == 0 {
		return nil, nil, false
	}
	for len(h.active) < window && h.left > len(h.active)*eventsPerProgram {
		h.active = append(h.active, lifeOf(h.next))
		h.next++
	}
	if len(h.active) == 0 { // fewer events left than a program: a partial life
		h.active = append(h.active, lifeOf(h.next))
		h.next++
	}
	h.turn = (h.turn + 1) % len(h.active)
	l := h.active[h.turn]
	ev := l.evs[0]
	l.evs = l.evs[1:]
	if len(l.evs) == 0 {
		h.active = append(h.active[:h.turn], h.active[h.turn+1:]...)
	}
	h.left--
	return l, ev, true
}

// historySource is a pgx.CopyFromSource of the next left events of gen.
type historySource struct {
	gen  *history
	left int
	base int64
	ord  int64
	row  []any
	err  error
}

func (s *historySource) Next() bool {
	if s.left == 0 || s.err != nil {
		return false
	}
	l, ev, ok := s.gen.nextEvent()
	if !ok {
		return false
	}
	typ, data, err := s.gen.codec.Encode(ev)
	if err != nil {
		s.err = err
		return false
	}
	s.left--
	s.ord++
	l.ver++
	s.gen.eventNo++
	s.gen.at = s.gen.at.Add(time.Millisecond)
	var id pgtype.UUID
	id.Valid = true
	u := s.gen.eventNo
	copy(id.Bytes[:], []byte{0x01, 0x90, 0xd5, 0xa1, 0, 0, 0x70, 0, 0x80, 0, byte(u >> 40), byte(u >> 32), byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
	s.row = []any{s.base | s.ord, id, l.stream, l.ver, typ, string(data), "{}", s.gen.at}
	return true
}

func (s *historySource) Values() ([]any, error) { return s.row, nil }
func (s *historySource) Err() error             { return s.err }

// copyBaseline copies the rows of catalog version v out (COPY TO, binary) and
// times COPY FROM of the same bytes into empty tables shaped like them (LIKE …
// INCLUDING ALL: the same indexes); it returns the row count and the load time.
func copyBaseline(ctx context.Context, pool *pgxpool.Pool, v int) (int64, time.Duration, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Release()
	pg := conn.Conn().PgConn()
	var rows int64
	var elapsed time.Duration
	for _, t := range []string{catalog.ProgramsTable, catalog.EpisodesTable, catalog.CategoriesTable} {
		src, err := rebuild.VersionedTable(t, v)
		if err != nil {
			return 0, 0, err
		}
		dst := "bench_copy_" + src
		if _, err := pg.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{dst}.Sanitize()+`; CREATE TABLE `+pgx.Identifier{dst}.Sanitize()+
			` (LIKE `+pgx.Identifier{src}.Sanitize()+` INCLUDING ALL)`).ReadAll(); err != nil {
			return 0, 0, err
		}
		var buf bytes.Buffer
		if _, err := pg.CopyTo(ctx, &buf, `COPY `+pgx.Identifier{src}.Sanitize()+` TO STDOUT (FORMAT binary)`); err != nil {
			return 0, 0, err
		}
		start := time.Now()
		tag, err := pg.CopyFrom(ctx, &buf, `COPY `+pgx.Identifier{dst}.Sanitize()+` FROM STDIN (FORMAT binary)`)
		if err != nil {
			return 0, 0, err
		}
		elapsed += time.Since(start)
		rows += tag.RowsAffected()
		if _, err := pg.Exec(ctx, `DROP TABLE `+pgx.Identifier{dst}.Sanitize()).ReadAll(); err != nil {
			return 0, 0, err
		}
	}
	if rows == 0 {
		return 0, 0, errors.New("the rebuild produced no rows")
	}
	return rows, elapsed, nil
}
