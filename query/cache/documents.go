package cache

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"

	"github.com/mediamesh/mediamesh/query/app"
)

// CatalogReadModel is the PostgreSQL catalog the document layer falls back to
// (infra/postgres/readmodel.Catalog).
type CatalogReadModel interface {
	app.ProgramReadModel
	app.EpisodesReadModel
	app.EpisodeReadModel
}

// Documents is the Redis layer of the by-id reads: it implements the program,
// episode-list and episode read models of query/app on the documents the catalog's
// documents sink writes (projections/documents), and falls back to PostgreSQL.
//
// Decisions:
//   - A document is read together with mm:catalog:v1:position, the position up to
//     which Redis holds every catalog change. While that key exists, a missing
//     document is an authoritative "not visible" as of that position (the sink
//     deletes documents that stop being visible), so 404s are answered by Redis
//     too. Without it (Redis lost its data and the sink is resyncing) a missing
//     document says nothing, and PostgreSQL answers.
//   - A consistency token is satisfied by a document whose version is at least the
//     token's (the token's own program), or by a position at or past the token's;
//     otherwise the read goes to PostgreSQL, whose check is exact.
//   - Any Redis failure (or the breaker being open) is a fallback to PostgreSQL,
//     never an error for the caller.
type Documents struct {
	remote  Remote
	keys    Keys
	pg      CatalogReadModel
	metrics Metrics
	log     *slog.Logger
}

// NewDocuments returns the layer; remote may be nil (Redis off: every read goes to
// pg), metrics and log may be nil.
func NewDocuments(remote Remote, keys Keys, pg CatalogReadModel, metrics Metrics, log *slog.Logger) (*Documents, error) {
	if pg == nil {
		return nil, errors.New("documents layer: nil catalog read model")
	}
	if keys.Catalog == "" {
		keys = DefaultKeys
	}
	if metrics == nil {
		metrics = noMetrics{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Documents{remote: remote, keys: keys, pg: pg, metrics: metrics, log: log}, nil
}

// get reads keys plus the position key; ok is false when Redis could not answer.
// pos is -1 when the position key is missing.
func (d *Documents) get(ctx context.Context, keys ...string) (vals [][]byte, pos int64, ok bool) {
	if d.remote == nil {
		return nil, -1, false
	}
	vals, err := d.remote.MGet(ctx, append(keys, d.keys.position())...)
	if err != nil {
		d.metrics.CacheRequest(LayerRedis, ResultError)
		if !errors.Is(err, ErrBreakerOpen) && ctx.Err() == nil {
			d.log.Debug("redis read failed; reading PostgreSQL", "error", err.Error())
		}
		return nil, -1, false
	}
	pos = -1
	if p := vals[len(vals)-1]; p != nil {
		if n, err := strconv.ParseInt(string(p), 10, 64); err == nil {
			pos = n
		}
	}
	return vals[:len(vals)-1], pos, true
}

// redisSnapshot is the snapshot of a Redis answer: includes is whether it
// satisfies after (by version for the given program, or by position).
func redisSnapshot(pos int64, after *app.WritePoint, programID string, version int64) app.Snapshot {
	s := app.Snapshot{Source: app.SourceRedis, Position: max(pos, 0), Includes: true}
	if after != nil {
		byVersion := programID != "" && after.ProgramID() == programID && version >= after.Version
		s.Includes = byVersion || (pos >= 0 && pos >= after.Position)
	}
	return s
}

func (d *Documents) hit()  { d.metrics.CacheRequest(LayerRedis, ResultHit) }
func (d *Documents) miss() { d.metrics.CacheRequest(LayerRedis, ResultMiss) }

func (d *Documents) postgres(err error) {
	if err != nil {
		d.metrics.CacheRequest(LayerPostgres, ResultError)
		return
	}
	d.metrics.CacheRequest(LayerPostgres, ResultHit)
}

// Program implements app.ProgramReadModel.
func (d *Documents) Program(ctx context.Context, id string, after *app.WritePoint) (*app.Program, int64, app.Snapshot, error) {
	if vals, pos, ok := d.get(ctx, d.keys.program(id)); ok {
		switch doc := vals[0]; {
		case doc != nil:
			var p app.Program
			if err := json.Unmarshal(doc, &p); err == nil {
				if snap := redisSnapshot(pos, after, id, p.Version); snap.Includes {
					d.hit()
					return &p, p.Version, snap, nil
				}
			} else {
				d.log.Warn("undecodable program document; reading PostgreSQL", "id", id, "error", err.Error())
			}
		case pos >= 0:
			if snap := redisSnapshot(pos, after, "", 0); snap.Includes {
				d.hit()
				return nil, 0, snap, nil
			}
		}
		d.miss()
	}
	p, v, snap, err := d.pg.Program(ctx, id, after)
	d.postgres(err)
	return p, v, snap, err
}

// Programs implements app.ProgramReadModel. With a consistency token Redis is used
// only when its position covers the token's write.
func (d *Documents) Programs(ctx context.Context, ids []string, after *app.WritePoint) (map[string]*app.Program, app.Snapshot, error) {
	if len(ids) == 0 {
		return map[string]*app.Program{}, app.Snapshot{Source: app.SourceRedis, Includes: true}, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = d.keys.program(id)
	}
	if vals, pos, ok := d.get(ctx, keys...); ok {
		snap := redisSnapshot(pos, after, "", 0)
		if snap.Includes {
			out := make(map[string]*app.Program, len(ids))
			var missing []string
			for i, v := range vals {
				var p app.Program
				switch {
				case v != nil && json.Unmarshal(v, &p) == nil:
					out[ids[i]] = &p
				case v == nil && pos >= 0:
					// not visible
				default:
					missing = append(missing, ids[i])
				}
			}
			if len(missing) == 0 {
				d.hit()
				return out, snap, nil
			}
			d.miss()
			got, psnap, err := d.pg.Programs(ctx, missing, after)
			d.postgres(err)
			if err != nil {
				return nil, psnap, err
			}
			for id, p := range got {
				out[id] = p
			}
			return out, psnap, nil
		}
		d.miss()
	}
	got, snap, err := d.pg.Programs(ctx, ids, after)
	d.postgres(err)
	return got, snap, err
}

// Episodes implements app.EpisodesReadModel. The program document is read before
// the list: the sink writes lists before programs, so a program document of
// version V comes with a list at least as new, which is what a token on that
// program needs.
func (d *Documents) Episodes(ctx context.Context, programID string, after *app.WritePoint) ([]app.Episode, bool, app.Snapshot, error) {
	if vals, pos, ok := d.get(ctx, d.keys.program(programID), d.keys.programEpisodes(programID)); ok {
		var version int64
		if vals[0] != nil {
			var p struct {
				Version int64 `json:"version"`
			}
			if json.Unmarshal(vals[0], &p) == nil {
				version = p.Version
			}
		}
		switch list := vals[1]; {
		case list != nil:
			var eps []app.Episode
			if err := json.Unmarshal(list, &eps); err == nil {
				if snap := redisSnapshot(pos, after, programID, version); snap.Includes {
					d.hit()
					if eps == nil {
						eps = []app.Episode{}
					}
					return eps, true, snap, nil
				}
			}
		case pos >= 0 && vals[0] == nil:
			if snap := redisSnapshot(pos, after, "", 0); snap.Includes {
				d.hit()
				return nil, false, snap, nil
			}
		}
		d.miss()
	}
	eps, visible, snap, err := d.pg.Episodes(ctx, programID, after)
	d.postgres(err)
	return eps, visible, snap, err
}

// Episode implements app.EpisodeReadModel.
func (d *Documents) Episode(ctx context.Context, id string, after *app.WritePoint) (*app.Episode, string, app.Snapshot, error) {
	if vals, pos, ok := d.get(ctx, d.keys.episode(id)); ok {
		switch doc := vals[0]; {
		case doc != nil:
			var e app.Episode
			if err := json.Unmarshal(doc, &e); err == nil {
				if snap := redisSnapshot(pos, after, "", 0); snap.Includes {
					d.hit()
					return &e, e.ProgramID, snap, nil
				}
			}
		case pos >= 0:
			if snap := redisSnapshot(pos, after, "", 0); snap.Includes {
				d.hit()
				return nil, "", snap, nil
			}
		}
		d.miss()
	}
	e, pid, snap, err := d.pg.Episode(ctx, id, after)
	d.postgres(err)
	return e, pid, snap, err
}
