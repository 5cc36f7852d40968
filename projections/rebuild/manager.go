// Package rebuild runs MediaMesh's projections version by version and rebuilds the
// rebuildable ones blue/green: a new version is built beside the serving one, from
// the event store's global log, across every sink it owns (PostgreSQL tables, Redis
// documents, search index), and becomes the serving version in one transaction.
//
// # How a rebuild goes
//
//  1. StartRebuild (the admin API or the CLI, in any process) records a rebuild in
//     projection_rebuilds: from_version is the serving version, to_version the
//     next free number. Nothing else happens in the caller: a Manager.Run (the
//     projector role) is woken by a NOTIFY on Channel and claims it with a lease.
//  2. The driving Manager prepares version to's sinks beside the live ones (Sink:
//     tables created LIKE the live ones, an empty search index, …) and its
//     checkpoint row at position 0, not serving.
//  3. It runs version to's projection with the ordinary runtime, reading the event
//     store's global log directly (never Kafka) from to's own checkpoint, in large
//     batches (Options.ReplayBatchSize): every batch commits with its checkpoint, so
//     a crash anywhere resumes from there. The same subscription then carries on
//     into live traffic: there is no hand-over between "replayed" and "live", hence
//     nothing lost or applied twice between them. Its checkpoint, fed in order, is
//     a watermark, recorded as its replayed_through: in the Kafka mode, after the
//     switch, the version's own consumer group starts at the topic's oldest offset
//     and the runtime acknowledges the events at or below it without applying them
//     again (projections/runtime), so live events do not wait behind the retention.
//  4. Once to's checkpoint has reached the serving version's (both rows locked in
//     one transaction, so neither can move) and every ReadySink has everything up
//     to it, the same transaction flips serving, marks the rebuild completed and
//     NOTIFYs runtime.NotifyChannel with the new serving version. Queries switch
//     their table names / key prefix / index name on that notification (Watcher,
//     ServingVersion); read-your-writes waits (runtime.Waiter) follow the serving
//     row. Switch hooks (cache warming) run after the commit.
//  5. The replaced version is frozen by the same transaction: its checkpoint is set
//     to runtime.Frozen, so its runtime (in any process, until that process
//     notices the switch and stops it) applies no later event, from the global log
//     or from Kafka, and its sinks stay exactly as of the switch: consistent, never
//     ahead of the new version. It is kept for Options.Grace for queries that have
//     not switched yet; then its sinks are dropped with its checkpoint.
//
// Until step 4 commits, queries read only the old version: they never see an empty
// or half-built read model, and a crash before it leaves the old version serving.
// A rebuild whose driver died is resumed by whichever Manager finds its lease
// expired (or released on a clean stop); a rebuild that failed is cleaned up and a
// new one can be started.
//
// Telemetry aggregates and side-effecting processors are listed by Status but
// never rebuilt (ErrNotRebuildable): see Kind.
//
// # Running projections
//
// Manager.Run replaces a fixed runtime.Runtime: it runs one runtime per active
// version of every defined projection (the serving one, and a rebuild's target
// while this process drives it), and follows changes made by any process. Two processes running the same version serialize on
// its checkpoint row (see projections/runtime), so any number of projectors may run.
package rebuild

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediamesh/mediamesh/projections/runtime"
)

// Channel is the PostgreSQL channel on which rebuilds are announced (payload: the
// projection name): a new rebuild, a switch, a retirement. Managers LISTEN on it
// to react at once instead of at their next poll.
const Channel = "mediamesh_rebuilds"

// Errors of StartRebuild and Progress; the api maps them to 404, 422 and 409.
var (
	// ErrUnknownProjection: no projection of that name is defined. It is
	// runtime.ErrUnknownProjection, so either package's check matches.
	ErrUnknownProjection = runtime.ErrUnknownProjection
	// ErrNotRebuildable: a telemetry aggregate or a side-effecting processor.
	ErrNotRebuildable = errors.New("projection is not rebuildable")
	// ErrRebuildRunning: a rebuild of the projection is already running.
	ErrRebuildRunning = errors.New("a rebuild of this projection is already running")
	// ErrNoRebuild: the projection has never been rebuilt.
	ErrNoRebuild = errors.New("projection has no rebuild")
)

// Version statuses reported by Status.
const (
	// StatusServing: the version that answers reads.
	StatusServing = "serving"
	// StatusRebuilding: the target of a running rebuild.
	StatusRebuilding = "rebuilding"
	// StatusRetiring: replaced by a rebuild, kept for the grace period.
	StatusRetiring = "retiring"
	// StatusStandby: a version with a checkpoint that neither serves nor rebuilds.
	StatusStandby = "standby"
	// StatusStarting: defined but without a checkpoint yet (never run).
	StatusStarting = "starting"
	// StatusRunning: a telemetry aggregate or a processor (one version, no serving flag).
	StatusRunning = "running"
)

// Rebuild statuses reported by Progress (API.md).
const (
	RebuildRunning   = "running"
	RebuildCompleted = "completed"
	RebuildFailed    = "failed"
)

// Status is what ops see of one projection version: a row of
// GET /v1/admin/projections and of `mediamesh projections status`.
type Status struct {
	Name        string `json:"name"`
	Version     int    `json:"version"`
	Status      string `json:"status"`
	Rebuildable bool   `json:"rebuildable"`
	// Position is the global position of the last event applied.
	Position int64 `json:"position"`
	// HeadPosition is the newest readable position of the event store. Positions
	// are not dense: lag is counted, never subtracted.
	HeadPosition int64 `json:"head_position"`
	// LagEvents counts the events above Position (exact with a Counter, otherwise
	// up to the runtime's LagCap).
	LagEvents int64 `json:"lag_events"`
	// LagSeconds is the age of the oldest event not applied yet (0 when caught up).
	LagSeconds float64 `json:"lag_seconds"`
	// DeadLetters counts the version's dead letters.
	DeadLetters int64 `json:"dead_letters"`
}

// Progress is the state of a projection's latest rebuild:
// GET /v1/admin/projections/{name}/rebuild.
type Progress struct {
	RebuildID string `json:"rebuild_id"`
	// Status is running, completed (switched) or failed.
	Status string `json:"status"`
	// Processed counts the events the new version has applied; Total the events of
	// the global log (it grows with live traffic). Without a Counter both are
	// global positions, which only estimate a fraction.
	Processed int64     `json:"processed"`
	Total     int64     `json:"total"`
	StartedAt time.Time `json:"started_at"`
	// ETASeconds estimates the time left from the recent apply rate: 0 once
	// finished, null while no rate is known yet.
	ETASeconds *float64 `json:"eta_seconds"`
	Error      string   `json:"error,omitempty"`
	// FromVersion served when the rebuild started; ToVersion is the one it builds.
	FromVersion int        `json:"from_version"`
	ToVersion   int        `json:"to_version"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
}

// Done reports whether the rebuild has finished (completed or failed).
func (p Progress) Done() bool { return p.Status != RebuildRunning }

// Counter counts the events of the global log with after < position <= upTo. An
// event store adapter that can count without reading events (the PostgreSQL
// store, through an index-only scan) gives exact progress and lag.
type Counter interface {
	CountRange(ctx context.Context, after, upTo int64) (int64, error)
}

// SwitchHook runs in the switching process after a rebuild's cut-over committed:
// warm caches from the new version, for instance. Other processes learn of the
// switch from Watcher.
type SwitchHook func(ctx context.Context, name string, from, to int)

// Options tune a Manager; zero values take the defaults.
type Options struct {
	// Runtime are the options of every live version's runtime (batch size, logger,
	// Stream for the Kafka mode).
	Runtime runtime.Options
	// ReplayBatchSize is the batch size of a version being rebuilt (default 5,000):
	// large batches amortize each transaction over many events, small enough that
	// a batch transaction stays short (it holds back the event store's readers).
	ReplayBatchSize int
	// Grace is how long a replaced version is kept after the switch (default 5 min):
	// queries that have not switched yet keep reading it.
	Grace time.Duration
	// Lease is how long a driver's claim on a rebuild lasts without renewal (default
	// 30 s): a driver that died is taken over after it.
	Lease time.Duration
	// Poll is how often Run looks for changes besides notifications (default 2 s).
	Poll time.Duration
	// ProgressEvery is how often a driver records progress and tries the switch
	// (default 500 ms).
	ProgressEvery time.Duration
	// Counter, when set, makes progress and lag exact event counts.
	Counter Counter
	// Wrap, when set, wraps every projection the Manager runs (tracing, metrics);
	// replay is true for a rebuild's target while it replays the event store
	// (events recorded long ago: no freshness to measure).
	Wrap func(p runtime.Projection, replay bool) runtime.Projection
	// Owner names this process in leases (default host-pid-random).
	Owner string
	// Logger (default Runtime.Logger, then slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.ReplayBatchSize <= 0 {
		o.ReplayBatchSize = 5000
	}
	if o.Grace <= 0 {
		o.Grace = 5 * time.Minute
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 500 * time.Millisecond
	}
	if o.Owner == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		o.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if o.Logger == nil {
		o.Logger = o.Runtime.Logger
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Runtime.Logger == nil {
		o.Runtime.Logger = o.Logger
	}
	return o
}

// Manager runs and rebuilds the defined projections. Status, StartRebuild,
// Progress, DeadLetters and Replay work in any process; Run belongs to the
// projector role (one call per Manager).
type Manager struct {
	pool *pgxpool.Pool
	src  runtime.Source
	defs []Definition
	opts Options
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex
	runners map[runnerKey]*runner
	driving map[string]*driver
	hooks   []SwitchHook
	wg      sync.WaitGroup
}

type runnerKey struct {
	name    string
	version int
}

type runner struct {
	replay bool
	cancel context.CancelFunc
	done   chan struct{}
}

type driver struct {
	prepared bool
	cancel   context.CancelFunc
}

// New returns a Manager of defs over pool (projection_checkpoints,
// projection_rebuilds, the projections' tables) and src (the event store's global
// log). Names must be unique.
func New(pool *pgxpool.Pool, src runtime.Source, defs []Definition, opts Options) (*Manager, error) {
	if pool == nil || src == nil {
		return nil, errors.New("rebuild manager: nil pool or source")
	}
	seen := map[string]bool{}
	for _, d := range defs {
		if err := d.validate(); err != nil {
			return nil, fmt.Errorf("rebuild manager: %w", err)
		}
		if seen[d.Name] {
			return nil, fmt.Errorf("rebuild manager: projection %s defined twice", d.Name)
		}
		seen[d.Name] = true
	}
	opts = opts.withDefaults()
	return &Manager{
		pool: pool, src: src, defs: slices.Clone(defs), opts: opts, log: opts.Logger,
		wake: make(chan struct{}, 1), runners: map[runnerKey]*runner{}, driving: map[string]*driver{},
	}, nil
}

// OnSwitch registers a hook run after every cut-over this process makes.
func (m *Manager) OnSwitch(h SwitchHook) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hooks = append(m.hooks, h)
}

// Definitions returns the defined projections in order.
func (m *Manager) Definitions() []Definition { return slices.Clone(m.defs) }

func (m *Manager) definition(name string) (Definition, bool) {
	for _, d := range m.defs {
		if d.Name == name {
			return d, true
		}
	}
	return Definition{}, false
}

func (m *Manager) names() []string {
	out := make([]string, len(m.defs))
	for i, d := range m.defs {
		out[i] = d.Name
	}
	return out
}

// kick wakes Run's loop.
func (m *Manager) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// StartRebuild records a rebuild of the projection called name and returns its
// id; a running Manager (any projector) drives it. It fails with
// ErrUnknownProjection, ErrNotRebuildable or ErrRebuildRunning.
func (m *Manager) StartRebuild(ctx context.Context, name string) (string, error) {
	def, ok := m.definition(name)
	if !ok {
		return "", fmt.Errorf("rebuild %q: %w", name, ErrUnknownProjection)
	}
	if !def.Kind.Rebuildable() || def.Projection == nil {
		return "", fmt.Errorf("rebuild %s (a %s projection): %w", name, def.Kind, ErrNotRebuildable)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("rebuild %s: %w", name, err)
	}
	err = pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('mediamesh.rebuild.' || $1))`, name); err != nil {
			return err
		}
		var running string
		err := tx.QueryRow(ctx, `SELECT id::text FROM projection_rebuilds WHERE name = $1 AND status = 'running'`, name).Scan(&running)
		if err == nil {
			return fmt.Errorf("rebuild %s: %w (%s)", name, ErrRebuildRunning, running)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		from := def.baseVersion()
		if err := tx.QueryRow(ctx, `SELECT coalesce((SELECT version FROM projection_checkpoints WHERE name = $1 AND serving), $2)`,
			name, from).Scan(&from); err != nil {
			return err
		}
		var to int
		if err := tx.QueryRow(ctx, `SELECT 1 + greatest($2::int,
				(SELECT max(version) FROM projection_checkpoints WHERE name = $1),
				(SELECT max(to_version) FROM projection_rebuilds WHERE name = $1))`, name, from).Scan(&to); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO projection_rebuilds (id, name, from_version, to_version) VALUES ($1, $2, $3, $4)`,
			id, name, from, to); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, name)
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // a concurrent start won the unique index
		return "", fmt.Errorf("rebuild %s: %w", name, ErrRebuildRunning)
	}
	if err != nil {
		if errors.Is(err, ErrRebuildRunning) {
			return "", err
		}
		return "", fmt.Errorf("start rebuild %s: %w", name, err)
	}
	m.log.Info("projection rebuild requested", "projection", name, "rebuild_id", id.String())
	m.kick()
	return id.String(), nil
}

// Progress returns the latest rebuild of the projection called name, or
// ErrUnknownProjection or ErrNoRebuild.
func (m *Manager) Progress(ctx context.Context, name string) (Progress, error) {
	if _, ok := m.definition(name); !ok {
		return Progress{}, fmt.Errorf("rebuild progress %q: %w", name, ErrUnknownProjection)
	}
	var (
		p      Progress
		rate   float64
		errMsg *string
	)
	err := m.pool.QueryRow(ctx, `SELECT id::text, status, processed, total, rate, started_at, finished_at, error, from_version, to_version
		FROM projection_rebuilds WHERE name = $1 ORDER BY started_at DESC, id DESC LIMIT 1`, name).
		Scan(&p.RebuildID, &p.Status, &p.Processed, &p.Total, &rate, &p.StartedAt, &p.FinishedAt, &errMsg, &p.FromVersion, &p.ToVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return Progress{}, fmt.Errorf("rebuild progress %s: %w", name, ErrNoRebuild)
	}
	if err != nil {
		return Progress{}, fmt.Errorf("rebuild progress %s: %w", name, err)
	}
	if errMsg != nil {
		p.Error = *errMsg
	}
	switch {
	case p.Status != RebuildRunning:
		zero := 0.0
		p.ETASeconds = &zero
	case rate > 0:
		eta := math.Round(float64(max(p.Total-p.Processed, 0))/rate*10) / 10
		p.ETASeconds = &eta
	}
	p.StartedAt = p.StartedAt.UTC()
	if p.FinishedAt != nil {
		t := p.FinishedAt.UTC()
		p.FinishedAt = &t
	}
	return p, nil
}

// rebuildRow is a projection_rebuilds row as the Manager's loop needs it.
type rebuildRow struct {
	id                string
	name              string
	from, to          int
	status, phase     string
	owner             string
	leaseExpired      bool
	retireDue         bool
	retired           bool // retired_at is set: the old version's sinks are gone
	processed, total  int64
	frozen            int64 // the replaced version's position at the switch
	startedAt, leased time.Time
}

// state is what one reconciliation reads.
type state struct {
	versions map[string][]int // checkpoint rows per name
	rebuilds []rebuildRow     // running, switched, or retired but not yet dropped
	retired  map[runnerKey]bool
	failed   map[runnerKey]bool
	// replaced versions were switched away from and wait for their grace period.
	replaced map[runnerKey]bool
}

func (m *Manager) loadState(ctx context.Context) (state, error) {
	st := state{versions: map[string][]int{}, retired: map[runnerKey]bool{}, failed: map[runnerKey]bool{}, replaced: map[runnerKey]bool{}}
	rows, err := m.pool.Query(ctx, `SELECT name, version FROM projection_checkpoints WHERE name = ANY($1) ORDER BY name, version`, m.names())
	if err != nil {
		return st, fmt.Errorf("read checkpoints: %w", err)
	}
	var (
		name string
		v    int
	)
	if _, err := pgx.ForEachRow(rows, []any{&name, &v}, func() error {
		st.versions[name] = append(st.versions[name], v)
		return nil
	}); err != nil {
		return st, fmt.Errorf("read checkpoints: %w", err)
	}
	rows, err = m.pool.Query(ctx, `SELECT id::text, name, from_version, to_version, status, phase, coalesce(owner, ''),
			coalesce(lease_until < now(), true), coalesce(retire_after <= now(), false), retired_at IS NOT NULL, processed, total,
			coalesce(frozen_position, 0), started_at
		FROM projection_rebuilds WHERE name = ANY($1) ORDER BY started_at`, m.names())
	if err != nil {
		return st, fmt.Errorf("read rebuilds: %w", err)
	}
	var r rebuildRow
	if _, err := pgx.ForEachRow(rows, []any{&r.id, &r.name, &r.from, &r.to, &r.status, &r.phase, &r.owner, &r.leaseExpired,
		&r.retireDue, &r.retired, &r.processed, &r.total, &r.frozen, &r.startedAt}, func() error {
		switch {
		case r.status == RebuildFailed:
			st.failed[runnerKey{r.name, r.to}] = true
		case r.phase == "retired":
			st.retired[runnerKey{r.name, r.from}] = true
		case r.phase == "switched":
			st.replaced[runnerKey{r.name, r.from}] = true
		}
		if r.status == RebuildRunning || r.phase == "switched" || (r.phase == "retired" && !r.retired) {
			st.rebuilds = append(st.rebuilds, r)
		}
		return nil
	}); err != nil {
		return st, fmt.Errorf("read rebuilds: %w", err)
	}
	return st, nil
}

// Run runs every active version of every defined projection, drives rebuilds,
// and retires replaced versions, until ctx ends; then it stops them all, releases
// its leases and returns nil.
func (m *Manager) Run(ctx context.Context) error {
	lctx, cancel := context.WithCancel(ctx)
	var lwg sync.WaitGroup
	lwg.Go(func() { m.listen(lctx) })
	defer func() {
		cancel()
		lwg.Wait()
		m.stopAll()
	}()
	t := time.NewTicker(m.opts.Poll)
	defer t.Stop()
	for {
		if err := m.reconcile(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("projection manager: reconcile failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.wake:
		}
	}
}

// listen turns notifications on Channel into wake-ups, reconnecting with backoff.
func (m *Manager) listen(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := func() error {
			pc, err := m.pool.Acquire(ctx)
			if err != nil {
				return err
			}
			conn := pc.Hijack() // LISTEN state must never go back to the pool
			defer conn.Close(context.WithoutCancel(ctx))
			if _, err := conn.Exec(ctx, "LISTEN "+ident(Channel)); err != nil {
				return err
			}
			attempt = 0
			m.kick() // anything announced while not listening
			for {
				if _, err := conn.WaitForNotification(ctx); err != nil {
					return err
				}
				m.kick()
			}
		}()
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("projection manager: listener lost, reconnecting", "error", err)
		if !sleep(ctx, backoff(attempt)) {
			return
		}
	}
}

// reconcile makes this process run what the database says should run.
func (m *Manager) reconcile(ctx context.Context) error {
	st, err := m.loadState(ctx)
	if err != nil {
		return err
	}
	desired := map[runnerKey]bool{} // value: replay mode
	m.mu.Lock()
	for _, def := range m.defs {
		if def.Projection == nil {
			continue
		}
		building := map[int]bool{}
		for _, rb := range st.rebuilds {
			if rb.name == def.Name && rb.status == RebuildRunning {
				building[rb.to] = true
				if d := m.driving[rb.id]; d != nil && d.prepared {
					desired[runnerKey{def.Name, rb.to}] = true
				}
			}
		}
		n := 0
		for _, v := range st.versions[def.Name] {
			k := runnerKey{def.Name, v}
			if building[v] || st.retired[k] || st.failed[k] || st.replaced[k] {
				continue
			}
			desired[k] = false
			n++
		}
		if n == 0 && len(st.versions[def.Name]) == 0 {
			desired[runnerKey{def.Name, def.baseVersion()}] = false
		}
	}
	m.mu.Unlock()
	m.syncRunners(ctx, desired)

	for _, rb := range st.rebuilds {
		switch {
		case rb.status == RebuildRunning:
			m.mu.Lock()
			_, mine := m.driving[rb.id]
			m.mu.Unlock()
			if !mine && (rb.owner == "" || rb.owner == m.opts.Owner || rb.leaseExpired) {
				m.startDriver(ctx, rb)
			}
		case (rb.phase == "switched" && rb.retireDue) || (rb.phase == "retired" && !rb.retired):
			if rb.owner == "" || rb.owner == m.opts.Owner || rb.leaseExpired {
				if err := m.retire(ctx, rb); err != nil && ctx.Err() == nil {
					m.log.Warn("projection manager: retire failed, will retry", "projection", rb.name, "version", rb.from, "error", err)
				}
			}
		}
	}
	// A runtime of a retired version elsewhere may have recreated its checkpoint
	// row (it does when its row is deleted under it) before it was stopped.
	for k := range st.retired {
		if slices.Contains(st.versions[k.name], k.version) {
			if _, err := m.pool.Exec(ctx, `DELETE FROM projection_checkpoints WHERE name = $1 AND version = $2 AND NOT serving`,
				k.name, k.version); err != nil {
				return fmt.Errorf("delete checkpoint of retired %s v%d: %w", k.name, k.version, err)
			}
		}
	}
	return nil
}

// syncRunners starts and stops runtimes so that exactly desired run.
func (m *Manager) syncRunners(ctx context.Context, desired map[runnerKey]bool) {
	m.mu.Lock()
	var stop []*runner
	for k, r := range m.runners {
		replay, want := desired[k]
		select {
		case <-r.done:
			delete(m.runners, k) // ended on its own: start again below
			continue
		default:
		}
		if !want || replay != r.replay {
			stop = append(stop, r)
			delete(m.runners, k)
		}
	}
	m.mu.Unlock()
	for _, r := range stop {
		r.cancel()
		<-r.done
	}
	for k, replay := range desired {
		m.mu.Lock()
		_, running := m.runners[k]
		m.mu.Unlock()
		if !running {
			m.startRunner(ctx, k, replay)
		}
	}
}

func (m *Manager) startRunner(ctx context.Context, k runnerKey, replay bool) {
	def, _ := m.definition(k.name)
	p, err := def.Projection(k.version)
	if err != nil {
		m.log.Error("projection manager: cannot build projection", "projection", k.name, "version", k.version, "error", err)
		return
	}
	if m.opts.Wrap != nil {
		p = m.opts.Wrap(p, replay)
	}
	opts := m.opts.Runtime
	if replay {
		// A rebuild reads the event store's global log directly, in large batches.
		opts.Stream = nil
		opts.BatchSize = m.opts.ReplayBatchSize
	}
	rt, err := runtime.New(m.pool, m.src, []runtime.Projection{p}, opts)
	if err != nil {
		m.log.Error("projection manager: cannot build runtime", "projection", k.name, "version", k.version, "error", err)
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &runner{replay: replay, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.runners[k] = r
	m.mu.Unlock()
	go func() {
		defer close(r.done)
		var wg sync.WaitGroup
		for _, s := range def.Sinks {
			if w, ok := s.(WorkerSink); ok {
				wg.Go(func() {
					if err := w.Run(rctx, k.version); err != nil && rctx.Err() == nil {
						m.log.Error("projection manager: sink worker stopped", "projection", k.name, "version", k.version, "error", err)
					}
				})
			}
		}
		if err := rt.Run(rctx); err != nil && rctx.Err() == nil {
			m.log.Error("projection manager: projection stopped", "projection", k.name, "version", k.version, "error", err)
		}
		cancel()
		wg.Wait()
	}()
	m.log.Info("projection running", "projection", k.name, "version", k.version, "replay", replay)
}

func (m *Manager) stopRunner(k runnerKey) {
	m.mu.Lock()
	r := m.runners[k]
	delete(m.runners, k)
	m.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// stopAll stops every driver, then every runner.
func (m *Manager) stopAll() {
	m.mu.Lock()
	for _, d := range m.driving {
		d.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.mu.Lock()
	runners := m.runners
	m.runners = map[runnerKey]*runner{}
	m.mu.Unlock()
	for _, r := range runners {
		r.cancel()
	}
	for _, r := range runners {
		<-r.done
	}
}

// backoff is 100 ms doubling to 5 s, with jitter over its upper half.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 6)
	d = min(d, 5*time.Second)
	return d/2 + mrand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// notification is the payload the switch sends on runtime.NotifyChannel.
func notification(name string, version int, position int64) string {
	b, _ := json.Marshal(runtime.Notification{Name: name, Version: version, Position: position, Serving: true})
	return string(b)
}
