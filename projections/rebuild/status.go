package rebuild

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediamesh/mediamesh/projections/runtime"
)

// defaultLagCap bounds lag_events without a Counter (as runtime.Options.LagCap).
const defaultLagCap = 1000

// Status lists every defined projection, one row per version it has (the serving
// one, a rebuild's target, a replaced one in its grace period), in definition
// order, then version order. It reads the checkpoints and the event store, so it
// works in any role; its cost is a few small queries per version (lag is counted
// through the Counter, or by reading at most LagCap events).
func (m *Manager) Status(ctx context.Context) ([]Status, error) {
	head, err := m.src.HeadPosition(ctx)
	if err != nil {
		return nil, fmt.Errorf("projection status: head position: %w", err)
	}
	st, err := m.loadState(ctx)
	if err != nil {
		return nil, fmt.Errorf("projection status: %w", err)
	}
	type key = runnerKey
	cps := map[key]checkpoint{}
	rows, err := m.pool.Query(ctx, `SELECT name, version, position, serving, updated_at FROM projection_checkpoints WHERE name = ANY($1)`, m.names())
	if err != nil {
		return nil, fmt.Errorf("projection status: %w", err)
	}
	var (
		k  key
		cp checkpoint
	)
	if _, err := pgx.ForEachRow(rows, []any{&k.name, &k.version, &cp.position, &cp.serving, &cp.updatedAt}, func() error {
		cps[k] = cp
		return nil
	}); err != nil {
		return nil, fmt.Errorf("projection status: %w", err)
	}
	dead := map[key]int64{}
	rows, err = m.pool.Query(ctx, `SELECT projection, version, count(*) FROM projection_dead_letters WHERE projection = ANY($1) GROUP BY 1, 2`, m.names())
	if err != nil {
		return nil, fmt.Errorf("projection status: dead letters: %w", err)
	}
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&k.name, &k.version, &n}, func() error {
		dead[k] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("projection status: dead letters: %w", err)
	}
	roles := map[key]string{}
	for _, rb := range st.rebuilds {
		switch {
		case rb.status == RebuildRunning:
			roles[key{rb.name, rb.to}] = StatusRebuilding
		case rb.phase == "switched":
			roles[key{rb.name, rb.from}] = StatusRetiring
			if c, ok := cps[key{rb.name, rb.from}]; ok {
				c.position = rb.frozen // its checkpoint only keeps it frozen
				cps[key{rb.name, rb.from}] = c
			}
		}
	}

	var out []Status
	for _, def := range m.defs {
		switch {
		case def.Report != nil:
			rs, err := def.Report(ctx)
			if err != nil {
				return nil, fmt.Errorf("projection status %s: %w", def.Name, err)
			}
			for _, r := range rs {
				r.Rebuildable = false
				out = append(out, r)
			}
		case def.Checkpoint != nil:
			pos, _, err := def.Checkpoint(ctx)
			if err != nil {
				return nil, fmt.Errorf("projection status %s: %w", def.Name, err)
			}
			s := Status{Name: def.Name, Version: 1, Status: StatusRunning, Position: pos, HeadPosition: head, DeadLetters: dead[key{def.Name, 1}]}
			if err := m.lag(ctx, &s); err != nil {
				return nil, err
			}
			out = append(out, s)
		case def.Projection != nil:
			versions := slices.Clone(st.versions[def.Name])
			if len(versions) == 0 {
				versions = []int{def.baseVersion()}
			}
			for _, v := range versions {
				kv := key{def.Name, v}
				if st.retired[kv] || st.failed[kv] {
					continue
				}
				c, has := cps[kv]
				s := Status{Name: def.Name, Version: v, Rebuildable: def.Kind.Rebuildable(), Position: c.position,
					HeadPosition: head, DeadLetters: dead[kv]}
				switch {
				case !has:
					s.Status = StatusStarting
				case c.serving:
					s.Status = StatusServing
				case roles[kv] != "":
					s.Status = roles[kv]
				default:
					s.Status = StatusStandby
				}
				if err := m.lag(ctx, &s); err != nil {
					return nil, err
				}
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// lag fills LagEvents and LagSeconds of s from its Position and HeadPosition.
func (m *Manager) lag(ctx context.Context, s *Status) error {
	if s.HeadPosition <= s.Position {
		return nil
	}
	limit := m.opts.Runtime.LagCap
	if limit <= 0 {
		limit = defaultLagCap
	}
	if m.opts.Counter != nil {
		n, err := m.opts.Counter.CountRange(ctx, s.Position, s.HeadPosition)
		if err != nil {
			return fmt.Errorf("projection status %s: count lag: %w", s.Name, err)
		}
		s.LagEvents = n
		limit = 1
	}
	evs, err := m.src.ReadAll(ctx, s.Position, limit)
	if err != nil {
		return fmt.Errorf("projection status %s: read lag: %w", s.Name, err)
	}
	if m.opts.Counter == nil {
		s.LagEvents = int64(len(evs))
	}
	if len(evs) > 0 {
		if age := time.Since(evs[0].OccurredAt).Seconds(); age > 0 {
			s.LagSeconds = age
		}
	}
	return nil
}

// DeadLetters lists the dead letters of the projection called name (every
// version), or of every defined projection when name is empty, oldest first, at
// most limit (default 100).
func (m *Manager) DeadLetters(ctx context.Context, name string, limit int) ([]runtime.DeadLetter, error) {
	names := m.names()
	if name != "" {
		if _, ok := m.definition(name); !ok {
			return nil, fmt.Errorf("dead letters of %q: %w", name, ErrUnknownProjection)
		}
		names = []string{name}
	}
	if limit <= 0 {
		limit = 100
	}
	rows, err := m.pool.Query(ctx, `SELECT projection, version, position, event_id, type, stream_id, stream_version,
			occurred_at, error, parked, attempts, failed_at, data
		FROM projection_dead_letters WHERE projection = ANY($1)
		ORDER BY projection, version, position LIMIT $2`, names, limit)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (runtime.DeadLetter, error) {
		var d runtime.DeadLetter
		var data []byte
		err := row.Scan(&d.Projection, &d.Version, &d.Position, &d.EventID, &d.Type, &d.StreamID, &d.StreamVersion,
			&d.OccurredAt, &d.Error, &d.Parked, &d.Attempts, &d.FailedAt, &data)
		if json.Valid(data) {
			d.Data = data
		} else {
			d.Data, _ = json.Marshal(string(data))
		}
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Replay re-applies the dead letters of every active version of the projection
// called name (see runtime.Runtime.Replay): each stream in one transaction that
// holds the version's checkpoint lock, so it never interleaves with a live batch
// in any process. Only projections this Manager runs can be replayed.
func (m *Manager) Replay(ctx context.Context, name string) (runtime.ReplayResult, error) {
	def, ok := m.definition(name)
	if !ok {
		return runtime.ReplayResult{}, fmt.Errorf("replay %q: %w", name, ErrUnknownProjection)
	}
	if def.Projection == nil {
		return runtime.ReplayResult{}, fmt.Errorf("replay %s: its dead letters are replayed by the process that runs it, not by the projection manager", name)
	}
	st, err := m.loadState(ctx)
	if err != nil {
		return runtime.ReplayResult{}, fmt.Errorf("replay %s: %w", name, err)
	}
	var projs []runtime.Projection
	for _, v := range st.versions[name] {
		k := runnerKey{name, v}
		if st.retired[k] || st.failed[k] || st.replaced[k] {
			continue
		}
		p, err := def.Projection(v)
		if err != nil {
			return runtime.ReplayResult{}, fmt.Errorf("replay %s v%d: %w", name, v, err)
		}
		projs = append(projs, p)
	}
	if len(projs) == 0 {
		return runtime.ReplayResult{}, nil
	}
	rt, err := runtime.New(m.pool, m.src, projs, m.opts.Runtime)
	if err != nil {
		return runtime.ReplayResult{}, err
	}
	return rt.Replay(ctx, name)
}
