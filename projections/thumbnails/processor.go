// Package thumbnails is the thumbnail processor: it reacts to AssetUploaded by
// generating an asset's renditions (small, medium and large, as JPEG and WebP),
// storing them in the blob store, asking the CDN to purge the URLs a replaced image
// changed, and recording the result as AssetProcessed through the write side.
//
// Decisions:
//   - It is a processor with side effects, not a projection: it is never rebuilt
//     and nothing replays it from position 0. What it did is in the event store
//     (AssetProcessed), so the catalog projections rebuild images from events alone.
//   - It tails the event store's global log from its own checkpoint
//     (processor_checkpoints), like the relay: projections/runtime applies batches
//     inside a database transaction, and rendering (hundreds of milliseconds per
//     image) inside one would hold back every reader of the global log.
//   - One active processor per name: it works only while it holds a PostgreSQL
//     session advisory lock on a dedicated connection, and writes its checkpoint on
//     that connection. A standby takes over when the holder's session ends.
//   - At least once, with idempotent effects: renditions go to keys that depend only
//     on the asset (a rerun rewrites the same keys), AssetProcessed is recorded by an
//     idempotent command (its event id derives from the upload's), and an upload that
//     already has a result, or that a newer upload superseded, is skipped. Each
//     asset is processed under its own advisory lock, so a dead-letter replay and the
//     live loop never interleave on one asset and an older image cannot overwrite a
//     newer one's renditions.
//   - Failures never block the log: an image that cannot be decoded, or whose
//     original is missing, goes to the dead letters at once; any other failure is
//     retried MaxAttempts times with backoff and then dead-lettered. Dead letters
//     live in projection_dead_letters under the processor's name (version 1), with
//     the error; Replay processes them again after the cause is fixed.
//   - A failed CDN purge does not fail the upload's processing: the renditions are
//     stored either way, and AssetProcessed records the purge's error.
package thumbnails

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/events"
	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Defaults of Config.
const (
	DefaultName         = "thumbnails"
	DefaultBatchSize    = 100
	DefaultMaxAttempts  = 3
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 5 * time.Second
	DefaultEventTimeout = 2 * time.Minute
	DefaultLagCap       = 1000
)

// Version is the version under which the processor's dead letters are kept.
const Version = 1

// Advisory lock classes (two-key form): the processor's own lock and the per-asset
// locks; the second key is hashtext(name) or hashtext(asset id).
const (
	lockClassProcessor = 0x6d6d7470 // "mmtp"
	lockClassAsset     = 0x6d6d7461 // "mmta"
)

// Config tunes a processor; zero values take the defaults.
type Config struct {
	// Name identifies the checkpoint, the lock and the dead letters (default
	// "thumbnails"). Processors with one name are one processor.
	Name string
	// Sizes are the renditions to make (default DefaultSizes).
	Sizes []Size
	// BatchSize is the most events read from the log at once (default 100).
	BatchSize int
	// MaxAttempts is how often an upload is tried before it is dead-lettered,
	// unless its failure is permanent (default 3).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the waits between attempts and between runs.
	MinBackoff, MaxBackoff time.Duration
	// EventTimeout bounds one attempt at one upload (default 2 min).
	EventTimeout time.Duration
	// PurgeBaseURL is the base of the URLs sent to the purger: the CDN's base URL
	// (MEDIAMESH_CDN_BASE_URL); the URLs are PurgeBaseURL + "/media/{key}", as the
	// API hands them out. Empty: the bare paths "/media/{key}".
	PurgeBaseURL string
	// LagCap caps the count behind Status's lag_events (default 1,000).
	LagCap int
	// Logger receives failures and dead letters (default slog.Default()).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if len(c.Sizes) == 0 {
		c.Sizes = DefaultSizes()
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.EventTimeout <= 0 {
		c.EventTimeout = DefaultEventTimeout
	}
	if c.LagCap <= 0 {
		c.LagCap = DefaultLagCap
	}
	c.PurgeBaseURL = strings.TrimRight(c.PurgeBaseURL, "/")
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Deps are what the processor works with. Purger is optional (no CDN: no purge).
type Deps struct {
	Log      Log
	Streams  Streams
	Blobs    Blobs
	Renderer Renderer
	Recorder Recorder
	Purger   Purger
}

// Processor generates renditions for uploaded assets. Build it with New and call
// Run; Status, DeadLetters and Replay work whether or not Run is running.
type Processor struct {
	db    *pgxpool.Pool
	deps  Deps
	cfg   Config
	codec *events.Codec
	log   *slog.Logger

	processed, deadLettered atomic.Int64
}

// New returns a processor that keeps its checkpoint, locks and dead letters in db.
func New(db *pgxpool.Pool, deps Deps, cfg Config) (*Processor, error) {
	var errs []error
	if db == nil {
		errs = append(errs, errors.New("thumbnails: nil database pool"))
	}
	if deps.Log == nil || deps.Streams == nil || deps.Blobs == nil || deps.Renderer == nil || deps.Recorder == nil {
		errs = append(errs, errors.New("thumbnails: Log, Streams, Blobs, Renderer and Recorder are required"))
	}
	cfg = cfg.withDefaults()
	for _, s := range cfg.Sizes {
		if s.Name == "" || s.Width <= 0 {
			errs = append(errs, fmt.Errorf("thumbnails: invalid size %+v", s))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Processor{db: db, deps: deps, cfg: cfg, codec: events.NewCodec(), log: cfg.Logger}, nil
}

// Name is the processor's name.
func (p *Processor) Name() string { return p.cfg.Name }

// Counts returns how many uploads this process has rendered and dead-lettered.
func (p *Processor) Counts() (processed, deadLettered int64) {
	return p.processed.Load(), p.deadLettered.Load()
}

// Run processes uploads until ctx ends, then returns nil. A failed run (database
// or event store trouble) gives up the lock and is retried with a backoff.
func (p *Processor) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		progressed, err := p.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			attempt = 0
		}
		p.log.Warn("thumbnail processor stopped, restarting", "processor", p.cfg.Name, "error", err)
		if !p.sleep(ctx, attempt) {
			return nil
		}
	}
}

// runOnce takes the lock and processes from the checkpoint until something fails.
func (p *Processor) runOnce(ctx context.Context) (progressed bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, p.db.Config().ConnConfig.Copy())
	if err != nil {
		return false, fmt.Errorf("lock connection: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, lockClassProcessor, p.cfg.Name); err != nil {
		return false, fmt.Errorf("wait for processor lock %s: %w", p.cfg.Name, err)
	}
	var pos int64
	err = conn.QueryRow(ctx, `SELECT position FROM processor_checkpoints WHERE name = $1`, p.cfg.Name).Scan(&pos)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("load checkpoint %s: %w", p.cfg.Name, err)
	}
	p.log.Info("thumbnail processor started", "processor", p.cfg.Name, "position", pos)
	err = p.deps.Log.Subscribe(ctx, pos, p.cfg.BatchSize, func(ctx context.Context, batch []events.Envelope) error {
		for _, env := range batch {
			if env.Type != events.TypeAssetUploaded {
				continue
			}
			if err := p.handle(ctx, env); err != nil {
				return err
			}
		}
		last := batch[len(batch)-1].Position
		if _, err := conn.Exec(ctx, `INSERT INTO processor_checkpoints AS c (name, position, updated_at) VALUES ($1, $2, now())
			ON CONFLICT (name) DO UPDATE SET position = greatest(c.position, EXCLUDED.position), updated_at = now()`, p.cfg.Name, last); err != nil {
			return fmt.Errorf("save checkpoint %s at %d: %w", p.cfg.Name, last, err)
		}
		progressed = true
		return nil
	})
	return progressed, err
}

// handle processes one upload with retries; a failure that remains becomes a dead
// letter. It returns an error only when even the dead letter cannot be written (or
// ctx ended): the run then restarts from the checkpoint.
func (p *Processor) handle(ctx context.Context, env events.Envelope) error {
	var last error
	attempts := 0
	for attempts < p.cfg.MaxAttempts {
		attempts++
		err := p.process(ctx, env)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
		if permanent(err) {
			break
		}
		p.log.Warn("thumbnail processing failed, retrying", "processor", p.cfg.Name, "position", env.Position,
			"stream", env.StreamID, "attempt", attempts, "error", err)
		if attempts < p.cfg.MaxAttempts && !p.sleep(ctx, attempts-1) {
			return ctx.Err()
		}
	}
	return p.deadLetter(ctx, env, last, attempts)
}

// errPoison marks an event that cannot be what it claims (it does not decode, or
// sits on another asset's stream).
var errPoison = errors.New("malformed upload event")

// permanent reports whether retrying err cannot help: a bad image, a missing
// original, a malformed event.
func permanent(err error) bool {
	return errors.Is(err, ErrBadImage) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, errPoison)
}

// process renders one upload unless it has a result already or a newer upload
// superseded it (then it does nothing and returns nil).
func (p *Processor) process(ctx context.Context, env events.Envelope) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.EventTimeout)
	defer cancel()
	ev, err := p.codec.DecodeEnvelope(env)
	if err != nil {
		return fmt.Errorf("%w: %w", errPoison, err)
	}
	up, ok := ev.(events.AssetUploaded)
	if !ok || env.StreamID != events.AssetStreamID(up.AssetID) || up.AssetID == "" {
		return fmt.Errorf("%w: %s on stream %s", errPoison, env.Type, env.StreamID)
	}
	unlock, err := p.lockAsset(ctx, up.AssetID)
	if err != nil {
		return err
	}
	defer unlock()

	st, err := p.uploadState(ctx, up, env.Version)
	if err != nil {
		return err
	}
	if st.done || st.superseded {
		p.log.Debug("thumbnail processing skipped", "asset", up.AssetID, "upload_version", env.Version, "done", st.done, "superseded", st.superseded)
		return nil
	}
	original, err := p.deps.Blobs.Read(ctx, up.OriginalKey)
	if err != nil {
		return fmt.Errorf("read original %s: %w", up.OriginalKey, err)
	}
	renditions, err := p.deps.Renderer.Render(ctx, original, p.cfg.Sizes)
	if err != nil {
		return fmt.Errorf("render %s: %w", up.OriginalKey, err)
	}
	result := events.AssetProcessed{
		AssetID: up.AssetID, ProgramID: up.ProgramID, EpisodeID: up.EpisodeID, Kind: up.Kind,
		UploadVersion: env.Version, SHA256: up.SHA256, OriginalKey: up.OriginalKey,
		Renditions: make([]events.AssetRendition, 0, len(renditions)),
	}
	for _, r := range renditions {
		key := events.AssetRenditionKey(up.AssetID, r.Size, r.Format)
		if err := p.deps.Blobs.Put(ctx, key, r.Data, r.ContentType); err != nil {
			return fmt.Errorf("store rendition %s: %w", key, err)
		}
		result.Renditions = append(result.Renditions, events.AssetRendition{Size: r.Size, Format: r.Format, Key: key,
			ContentType: r.ContentType, Width: r.Width, Height: r.Height, Bytes: int64(len(r.Data))})
	}
	if st.replaced && p.deps.Purger != nil {
		result.PurgedURLs = make([]string, 0, len(result.Renditions))
		for _, r := range result.Renditions {
			result.PurgedURLs = append(result.PurgedURLs, p.purgeURL(r.Key))
		}
		if err := p.deps.Purger.Purge(ctx, result.PurgedURLs); err != nil {
			if ctx.Err() != nil {
				return err
			}
			result.PurgeError = err.Error()
			p.log.Error("cdn purge failed", "asset", up.AssetID, "urls", len(result.PurgedURLs), "error", err)
		}
	}
	if _, err := p.deps.Recorder.RecordProcessed(ctx, result, env.EventID); err != nil {
		return fmt.Errorf("record processed %s v%d: %w", up.AssetID, env.Version, err)
	}
	p.processed.Add(1)
	return nil
}

// purgeURL is the URL of key as the API hands it out and the CDN caches it.
func (p *Processor) purgeURL(key string) string {
	return p.cfg.PurgeBaseURL + "/media/" + key
}

// uploadState is what the asset's stream says about one of its uploads.
type uploadState struct {
	// done: the upload has an AssetProcessed. superseded: a newer upload exists.
	// replaced: an older upload exists (so its renditions' URLs change now).
	done, superseded, replaced bool
}

func (p *Processor) uploadState(ctx context.Context, up events.AssetUploaded, version int64) (uploadState, error) {
	envs, err := p.deps.Streams.ReadStream(ctx, events.AssetStreamID(up.AssetID))
	if err != nil {
		return uploadState{}, fmt.Errorf("read asset %s: %w", up.AssetID, err)
	}
	var st uploadState
	found := false
	for _, env := range envs {
		ev, err := p.codec.DecodeEnvelope(env)
		if err != nil {
			return uploadState{}, fmt.Errorf("read asset %s: version %d: %w", up.AssetID, env.Version, err)
		}
		switch e := ev.(type) {
		case events.AssetUploaded:
			switch {
			case env.Version < version:
				st.replaced = true
			case env.Version > version:
				st.superseded = true
			case e.SHA256 == up.SHA256:
				found = true
			}
		case events.AssetProcessed:
			if e.UploadVersion == version {
				st.done = true
			}
		}
	}
	if !found {
		return uploadState{}, fmt.Errorf("%w: asset %s has no upload %s at version %d", errPoison, up.AssetID, up.SHA256, version)
	}
	return st, nil
}

// lockAsset holds the asset's advisory lock on a pooled connection until unlock.
func (p *Processor) lockAsset(ctx context.Context, assetID string) (func(), error) {
	c, err := p.db.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock asset %s: %w", assetID, err)
	}
	if _, err := c.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, lockClassAsset, assetID); err != nil {
		c.Release()
		return nil, fmt.Errorf("lock asset %s: %w", assetID, err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var ok bool
		if err := c.QueryRow(uctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, lockClassAsset, assetID).Scan(&ok); err != nil || !ok {
			// The session may still hold the lock: never hand it back to the pool.
			_ = c.Hijack().Close(uctx)
			return
		}
		c.Release()
	}, nil
}

// deadLetter records env with the error that remained.
func (p *Processor) deadLetter(ctx context.Context, env events.Envelope, cause error, attempts int) error {
	p.log.Error("thumbnail processing dead-lettered", "processor", p.cfg.Name, "position", env.Position,
		"event_id", env.EventID, "stream", env.StreamID, "attempts", attempts, "error", cause)
	meta, err := json.Marshal(env.Metadata)
	if err != nil {
		meta = []byte("{}")
	}
	data := []byte(env.Data)
	if data == nil {
		data = []byte{}
	}
	_, err = p.db.Exec(ctx, `INSERT INTO projection_dead_letters
		(projection, version, position, event_id, type, stream_id, stream_version, occurred_at, metadata, data, error, parked, attempts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, false, $12)
		ON CONFLICT (projection, version, position) DO UPDATE SET error = EXCLUDED.error, attempts = projection_dead_letters.attempts + EXCLUDED.attempts, failed_at = now()`,
		p.cfg.Name, Version, env.Position, env.EventID, env.Type, env.StreamID, env.Version, env.OccurredAt, meta, data, cause.Error(), attempts)
	if err != nil {
		return fmt.Errorf("write dead letter at %d: %w", env.Position, err)
	}
	p.deadLettered.Add(1)
	return nil
}

// DeadLetters lists the processor's dead letters, oldest first, at most limit
// (default 100).
func (p *Processor) DeadLetters(ctx context.Context, limit int) ([]runtime.DeadLetter, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := p.db.Query(ctx, `SELECT projection, version, position, event_id, type, stream_id, stream_version,
			occurred_at, error, parked, attempts, failed_at, data
		FROM projection_dead_letters WHERE projection = $1 AND version = $2 ORDER BY position LIMIT $3`, p.cfg.Name, Version, limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (runtime.DeadLetter, error) {
		var d runtime.DeadLetter
		var data []byte
		err := row.Scan(&d.Projection, &d.Version, &d.Position, &d.EventID, &d.Type, &d.StreamID, &d.StreamVersion,
			&d.OccurredAt, &d.Error, &d.Parked, &d.Attempts, &d.FailedAt, &data)
		d.Data = json.RawMessage(data)
		if !json.Valid(data) {
			d.Data, _ = json.Marshal(string(data))
		}
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Replay processes the dead letters again, oldest first, once each: one that
// succeeds now (or whose upload was superseded or processed meanwhile) is deleted;
// one that fails keeps its place with the new error. Meant to run after the cause
// is fixed; safe while Run runs (assets are locked one by one).
func (p *Processor) Replay(ctx context.Context) (runtime.ReplayResult, error) {
	var res runtime.ReplayResult
	rows, err := p.db.Query(ctx, `SELECT id, position, event_id, type, stream_id, stream_version, occurred_at, metadata, data
		FROM projection_dead_letters WHERE projection = $1 AND version = $2 ORDER BY position`, p.cfg.Name, Version)
	if err != nil {
		return res, fmt.Errorf("replay: list dead letters: %w", err)
	}
	type letter struct {
		id  int64
		env events.Envelope
	}
	letters, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (letter, error) {
		var l letter
		var meta, data []byte
		err := row.Scan(&l.id, &l.env.Position, &l.env.EventID, &l.env.Type, &l.env.StreamID, &l.env.Version, &l.env.OccurredAt, &meta, &data)
		_ = json.Unmarshal(meta, &l.env.Metadata) // metadata only informs
		l.env.Data = data
		return l, err
	})
	if err != nil {
		return res, fmt.Errorf("replay: list dead letters: %w", err)
	}
	for _, l := range letters {
		perr := p.process(ctx, l.env)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if perr == nil {
			if _, err := p.db.Exec(ctx, `DELETE FROM projection_dead_letters WHERE id = $1`, l.id); err != nil {
				return res, fmt.Errorf("replay: delete dead letter %d: %w", l.id, err)
			}
			res.Replayed++
			continue
		}
		if _, err := p.db.Exec(ctx, `UPDATE projection_dead_letters SET error = $2, attempts = attempts + 1, failed_at = now() WHERE id = $1`,
			l.id, perr.Error()); err != nil {
			return res, fmt.Errorf("replay: update dead letter %d: %w", l.id, err)
		}
		res.Remaining++
	}
	return res, nil
}

// Status reports the processor's position, lag and dead letters in the shape of
// the projections' status (GET /v1/admin/projections), with Version 1 and Serving
// true.
func (p *Processor) Status(ctx context.Context) (runtime.Status, error) {
	st := runtime.Status{Name: p.cfg.Name, Version: Version, Serving: true}
	head, err := p.deps.Log.HeadPosition(ctx)
	if err != nil {
		return st, fmt.Errorf("processor status: head position: %w", err)
	}
	st.HeadPosition = head
	err = p.db.QueryRow(ctx, `SELECT coalesce((SELECT position FROM processor_checkpoints WHERE name = $1), 0),
			coalesce((SELECT updated_at FROM processor_checkpoints WHERE name = $1), 'epoch'::timestamptz),
			(SELECT count(*) FROM projection_dead_letters WHERE projection = $1 AND version = $2)`, p.cfg.Name, Version).
		Scan(&st.Position, &st.UpdatedAt, &st.DeadLetters)
	if err != nil {
		return st, fmt.Errorf("processor status: %w", err)
	}
	if st.UpdatedAt.Equal(time.Unix(0, 0)) {
		st.UpdatedAt = time.Time{}
	}
	if head > st.Position {
		evs, err := p.deps.Log.ReadAll(ctx, st.Position, p.cfg.LagCap)
		if err != nil {
			return st, fmt.Errorf("processor status: lag: %w", err)
		}
		st.LagEvents = int64(len(evs))
		st.LagEventsCapped = len(evs) == p.cfg.LagCap
		if len(evs) > 0 {
			st.LagSeconds = max(0, time.Since(evs[0].OccurredAt).Seconds())
		}
	}
	return st, nil
}

// sleep waits MinBackoff·2^attempt capped at MaxBackoff, jittered over its upper
// half; false if ctx ended.
func (p *Processor) sleep(ctx context.Context, attempt int) bool {
	d := p.cfg.MinBackoff << min(attempt, 20)
	if d <= 0 || d > p.cfg.MaxBackoff {
		d = p.cfg.MaxBackoff
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
