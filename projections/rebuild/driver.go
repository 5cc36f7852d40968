package rebuild

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/projections/runtime"
)

// errLeaseLost: another process took the rebuild over (or it was failed).
var errLeaseLost = errors.New("rebuild lease lost")

// prepareAttempts bounds how often preparing a rebuild's sinks is tried before the
// rebuild is failed: a sink that cannot be created is a deploy problem to fix, not
// something to retry for ever.
const prepareAttempts = 5

func (m *Manager) startDriver(ctx context.Context, rb rebuildRow) {
	dctx, cancel := context.WithCancel(ctx)
	d := &driver{cancel: cancel}
	m.mu.Lock()
	m.driving[rb.id] = d
	m.mu.Unlock()
	m.wg.Go(func() {
		defer func() {
			cancel()
			m.mu.Lock()
			delete(m.driving, rb.id)
			m.mu.Unlock()
			m.kick() // the replay runner is no longer wanted here
		}()
		if err := m.drive(dctx, d, rb); err != nil && dctx.Err() == nil && !errors.Is(err, errLeaseLost) {
			m.log.Error("projection rebuild: driver stopped", "projection", rb.name, "rebuild_id", rb.id, "error", err)
		}
	})
}

// claim takes the rebuild's lease if it is free, expired or already ours.
func (m *Manager) claim(ctx context.Context, id string) (bool, error) {
	tag, err := m.pool.Exec(ctx, `UPDATE projection_rebuilds SET owner = $2, lease_until = now() + make_interval(secs => $3::float8), updated_at = now()
		WHERE id = $1 AND status = 'running' AND (owner IS NULL OR owner = $2 OR lease_until < now())`,
		id, m.opts.Owner, m.opts.Lease.Seconds())
	if err != nil {
		return false, fmt.Errorf("claim rebuild %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// renew extends the lease; errLeaseLost when the rebuild is no longer ours.
func (m *Manager) renew(ctx context.Context, id string) error {
	tag, err := m.pool.Exec(ctx, `UPDATE projection_rebuilds SET lease_until = now() + make_interval(secs => $3::float8)
		WHERE id = $1 AND status = 'running' AND owner = $2`, id, m.opts.Owner, m.opts.Lease.Seconds())
	if err != nil {
		return fmt.Errorf("renew rebuild lease: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errLeaseLost
	}
	return nil
}

// release gives the lease up on a clean stop, so another process resumes at once.
func (m *Manager) release(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.pool.Exec(ctx, `UPDATE projection_rebuilds SET owner = NULL, lease_until = NULL
		WHERE id = $1 AND owner = $2`, id, m.opts.Owner); err != nil {
		m.log.Warn("projection rebuild: release lease", "rebuild_id", id, "error", err)
	}
}

// drive takes a rebuild from wherever it is to the switch.
func (m *Manager) drive(ctx context.Context, d *driver, rb rebuildRow) error {
	ok, err := m.claim(ctx, rb.id)
	if err != nil || !ok {
		return err
	}
	defer m.release(rb.id)
	def, found := m.definition(rb.name)
	if !found || def.Projection == nil {
		return m.fail(ctx, rb, fmt.Errorf("projection %s is not defined in this process", rb.name))
	}
	log := m.log.With("projection", rb.name, "rebuild_id", rb.id, "from_version", rb.from, "to_version", rb.to)
	for attempt := 0; ; attempt++ {
		err := m.prepare(ctx, def, rb)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt+1 >= prepareAttempts {
			return m.fail(ctx, rb, fmt.Errorf("prepare version %d: %w", rb.to, err))
		}
		log.Warn("projection rebuild: prepare failed, retrying", "error", err)
		if !sleep(ctx, backoff(attempt)) {
			return ctx.Err()
		}
	}
	log.Info("projection rebuild: replaying the event store into the new version")
	m.mu.Lock()
	d.prepared = true
	m.mu.Unlock()
	m.kick()

	tr := &tracker{}
	t := time.NewTicker(m.opts.ProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if err := m.renew(ctx, rb.id); err != nil {
			return err
		}
		cps, err := m.checkpoints(ctx, rb.name)
		if err != nil {
			log.Warn("projection rebuild: read checkpoints", "error", err)
			continue
		}
		if err := m.progress(ctx, rb, tr, cps); err != nil {
			log.Warn("projection rebuild: progress", "error", err)
			continue
		}
		target, ok := cps[rb.to]
		serving := servingOf(cps)
		if !ok || (serving != nil && target.position < serving.position) {
			continue // not caught up with the serving version yet
		}
		switched, err := m.trySwitch(ctx, def, rb, tr)
		if err != nil {
			if errors.Is(err, errLeaseLost) {
				return err
			}
			log.Warn("projection rebuild: switch failed, retrying", "error", err)
			continue
		}
		if switched {
			log.Info("projection rebuild: switched", "processed", tr.processed)
			m.runHooks(ctx, rb)
			m.kick()
			return nil
		}
	}
}

// prepare creates the new version's sinks and its checkpoint row. The first time
// (no checkpoint row yet) it drops whatever the target version's sinks hold
// first, so a rebuild never starts from leftovers; when resuming it keeps them,
// consistent with the checkpoint.
func (m *Manager) prepare(ctx context.Context, def Definition, rb rebuildRow) error {
	var exists bool
	if err := m.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM projection_checkpoints WHERE name = $1 AND version = $2)`,
		rb.name, rb.to).Scan(&exists); err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	if !exists {
		for _, s := range def.Sinks {
			if err := s.Drop(ctx, rb.to); err != nil {
				return fmt.Errorf("clear version %d: %w", rb.to, err)
			}
		}
	}
	for _, s := range def.Sinks {
		if err := s.Prepare(ctx, rb.from, rb.to); err != nil {
			return err
		}
	}
	if _, err := m.pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, version, serving) VALUES ($1, $2, false)
		ON CONFLICT DO NOTHING`, rb.name, rb.to); err != nil {
		return fmt.Errorf("create checkpoint: %w", err)
	}
	return nil
}

// checkpoint is one version's checkpoint row.
type checkpoint struct {
	position  int64
	serving   bool
	updatedAt time.Time
}

func (m *Manager) checkpoints(ctx context.Context, name string) (map[int]checkpoint, error) {
	rows, err := m.pool.Query(ctx, `SELECT version, position, serving, updated_at FROM projection_checkpoints WHERE name = $1`, name)
	if err != nil {
		return nil, err
	}
	out := map[int]checkpoint{}
	var (
		v  int
		cp checkpoint
	)
	_, err = pgx.ForEachRow(rows, []any{&v, &cp.position, &cp.serving, &cp.updatedAt}, func() error {
		out[v] = cp
		return nil
	})
	return out, err
}

func servingOf(cps map[int]checkpoint) *checkpoint {
	for _, cp := range cps {
		if cp.serving {
			return &cp
		}
	}
	return nil
}

// tracker follows a rebuild's progress between ticks.
type tracker struct {
	init                bool
	lastCP, processed   int64
	lastHead, headCount int64
	rate                float64 // events per second, smoothed
	at                  time.Time
}

// progress records how far the new version is: processed counts the events up to
// its checkpoint, total those up to the head, both kept incrementally (each tick
// counts only what is new) so a rebuild of millions of events does not recount
// them every half second.
func (m *Manager) progress(ctx context.Context, rb rebuildRow, tr *tracker, cps map[int]checkpoint) error {
	cp := cps[rb.to].position
	head, err := m.src.HeadPosition(ctx)
	if err != nil {
		return err
	}
	head = max(head, cp)
	now := time.Now()
	count := func(after, upTo int64) (int64, error) {
		if upTo <= after {
			return 0, nil
		}
		if m.opts.Counter == nil {
			return upTo - after, nil // positions: an estimate of the fraction only
		}
		return m.opts.Counter.CountRange(ctx, after, upTo)
	}
	dp, err := count(tr.lastCP, cp)
	if err != nil {
		return err
	}
	dh, err := count(tr.lastHead, head)
	if err != nil {
		return err
	}
	if tr.init {
		if dt := now.Sub(tr.at).Seconds(); dt > 0 {
			r := float64(dp) / dt
			if tr.rate == 0 {
				tr.rate = r
			} else {
				tr.rate = 0.7*tr.rate + 0.3*r
			}
		}
	}
	tr.init, tr.at = true, now
	tr.processed += dp
	tr.headCount += dh
	tr.lastCP, tr.lastHead = max(tr.lastCP, cp), max(tr.lastHead, head)
	total := max(tr.headCount, tr.processed)
	tag, err := m.pool.Exec(ctx, `UPDATE projection_rebuilds SET processed = $3, total = $4, rate = $5, updated_at = now()
		WHERE id = $1 AND owner = $2 AND status = 'running'`, rb.id, m.opts.Owner, tr.processed, total, tr.rate)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return errLeaseLost
	}
	return nil
}

// trySwitch makes version rb.to the serving one if, with every checkpoint row of
// the projection locked, it has applied at least what the serving version has and
// every ReadySink has caught up with it. It reports whether it switched.
func (m *Manager) trySwitch(ctx context.Context, def Definition, rb rebuildRow, tr *tracker) (bool, error) {
	tx, err := m.pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	rows, err := tx.Query(ctx, `SELECT version, position, serving FROM projection_checkpoints WHERE name = $1 ORDER BY version FOR UPDATE`, rb.name)
	if err != nil {
		return false, fmt.Errorf("lock checkpoints: %w", err)
	}
	cps := map[int]checkpoint{}
	var (
		v  int
		cp checkpoint
	)
	if _, err := pgx.ForEachRow(rows, []any{&v, &cp.position, &cp.serving}, func() error {
		cps[v] = cp
		return nil
	}); err != nil {
		return false, fmt.Errorf("lock checkpoints: %w", err)
	}
	target, ok := cps[rb.to]
	if !ok {
		return false, fmt.Errorf("checkpoint of version %d missing", rb.to)
	}
	from, frozen := rb.from, (*int64)(nil)
	for v, c := range cps {
		if c.serving {
			if target.position < c.position {
				return false, nil
			}
			from, frozen = v, &c.position
		}
	}
	for _, s := range def.Sinks {
		if r, ok := s.(ReadySink); ok {
			ready, err := r.Ready(ctx, tx, from, rb.to, target.position)
			if err != nil {
				return false, fmt.Errorf("sink readiness: %w", err)
			}
			if !ready {
				return false, nil
			}
		}
	}
	tag, err := tx.Exec(ctx, `UPDATE projection_rebuilds SET status = 'completed', phase = 'switched', switched_at = now(),
			finished_at = now(), retire_after = now() + make_interval(secs => $3::float8), owner = NULL, lease_until = NULL, updated_at = now(),
			processed = $4, total = greatest(total, $4), from_version = $5, frozen_position = $6
		WHERE id = $1 AND owner = $2 AND status = 'running'`, rb.id, m.opts.Owner, m.opts.Grace.Seconds(), tr.processed, from, frozen)
	if err != nil {
		return false, fmt.Errorf("complete rebuild: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return false, errLeaseLost
	}
	// Freeze the replaced version: with its checkpoint at the largest position, its
	// runtime (in whichever process still runs it until it notices the switch)
	// skips every later event, so its sinks stay exactly as of the switch and never
	// get ahead of the new version's.
	if _, err := tx.Exec(ctx, `UPDATE projection_checkpoints SET serving = false, position = $2, updated_at = now()
		WHERE name = $1 AND serving`, rb.name, runtime.Frozen); err != nil {
		return false, fmt.Errorf("unset serving: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE projection_checkpoints SET serving = true, updated_at = now() WHERE name = $1 AND version = $2`,
		rb.name, rb.to); err != nil {
		return false, fmt.Errorf("set serving: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2), pg_notify($3, $4)`,
		runtime.NotifyChannel, notification(rb.name, rb.to, target.position), Channel, rb.name); err != nil {
		return false, fmt.Errorf("notify switch: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit switch: %w", err)
	}
	return true, nil
}

func (m *Manager) runHooks(ctx context.Context, rb rebuildRow) {
	m.mu.Lock()
	hooks := append([]SwitchHook(nil), m.hooks...)
	m.mu.Unlock()
	for _, h := range hooks {
		func() {
			defer func() {
				if r := recover(); r != nil {
					m.log.Error("projection rebuild: switch hook panicked", "projection", rb.name, "panic", fmt.Sprint(r))
				}
			}()
			h(context.WithoutCancel(ctx), rb.name, rb.from, rb.to)
		}()
	}
}

// fail removes what the rebuild built, then records cause as its failure (in that
// order: a crash in between leaves it running, to be resumed). The live version
// was never touched.
func (m *Manager) fail(ctx context.Context, rb rebuildRow, cause error) error {
	m.log.Error("projection rebuild failed", "projection", rb.name, "rebuild_id", rb.id, "error", cause)
	ctx = context.WithoutCancel(ctx)
	m.stopRunner(runnerKey{rb.name, rb.to})
	if def, ok := m.definition(rb.name); ok {
		for _, s := range def.Sinks {
			if err := s.Drop(ctx, rb.to); err != nil {
				m.log.Warn("projection rebuild: drop failed version", "projection", rb.name, "version", rb.to, "error", err)
			}
		}
	}
	if err := m.forget(ctx, rb.name, rb.to); err != nil {
		return err
	}
	if _, err := m.pool.Exec(ctx, `UPDATE projection_rebuilds SET status = 'failed', error = $3, finished_at = now(),
			owner = NULL, lease_until = NULL, updated_at = now()
		WHERE id = $1 AND owner = $2 AND status = 'running'`, rb.id, m.opts.Owner, cause.Error()); err != nil {
		return fmt.Errorf("record failure: %w", err)
	}
	return cause
}

// forget deletes a version's checkpoint (unless it serves) and dead letters.
func (m *Manager) forget(ctx context.Context, name string, v int) error {
	return pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM projection_checkpoints WHERE name = $1 AND version = $2 AND NOT serving`, name, v); err != nil {
			return fmt.Errorf("delete checkpoint of %s v%d: %w", name, v, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM projection_dead_letters WHERE projection = $1 AND version = $2`, name, v); err != nil {
			return fmt.Errorf("delete dead letters of %s v%d: %w", name, v, err)
		}
		return nil
	})
}

// retire drops a replaced version once its grace period is over. It first marks
// the rebuild retired (so no process runs the old version any more), then stops it
// here, drops its sinks and forgets its checkpoint. A failure leaves the mark and
// is retried by the next reconciliation.
func (m *Manager) retire(ctx context.Context, rb rebuildRow) error {
	tag, err := m.pool.Exec(ctx, `UPDATE projection_rebuilds SET phase = 'retired', owner = $2, lease_until = now() + make_interval(secs => $3::float8), updated_at = now()
		WHERE id = $1 AND retired_at IS NULL AND (phase = 'retired' OR (phase = 'switched' AND retire_after <= now()))
		  AND (owner IS NULL OR owner = $2 OR lease_until < now())`, rb.id, m.opts.Owner, m.opts.Lease.Seconds())
	if err != nil {
		return fmt.Errorf("claim retirement: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil
	}
	if _, err := m.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, rb.name); err != nil {
		return fmt.Errorf("notify retirement: %w", err)
	}
	m.stopRunner(runnerKey{rb.name, rb.from})
	def, _ := m.definition(rb.name)
	for _, s := range def.Sinks {
		if err := s.Drop(ctx, rb.from); err != nil {
			return fmt.Errorf("drop version %d: %w", rb.from, err)
		}
	}
	if err := m.forget(ctx, rb.name, rb.from); err != nil {
		return err
	}
	if _, err := m.pool.Exec(ctx, `UPDATE projection_rebuilds SET retired_at = now(), owner = NULL, lease_until = NULL, updated_at = now()
		WHERE id = $1`, rb.id); err != nil {
		return fmt.Errorf("record retirement: %w", err)
	}
	m.log.Info("projection version retired", "projection", rb.name, "version", rb.from)
	return nil
}
