package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mediamesh/mediamesh/projections/documents"
)

// DefaultGuardTTL is how long a document's guard outlives its last write.
const DefaultGuardTTL = 10 * time.Minute

// guardedWrite stores (or, for an empty value, deletes) a document unless its guard
// key holds a guard at or above ours. KEYS: the document, its guard (one slot).
// ARGV: guard, guard TTL in seconds, value. Returns 0 when the guard refused the
// write, 1 when the write changed nothing, 2 when the stored document changed.
var guardedWrite = goredis.NewScript(`
local g = redis.call('GET', KEYS[2])
if g and tonumber(g) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', tonumber(ARGV[2]))
local old = redis.call('GET', KEYS[1])
if ARGV[3] == '' then
  if old then
    redis.call('DEL', KEYS[1])
    return 2
  end
  return 1
end
if old == ARGV[3] then
  return 1
end
redis.call('SET', KEYS[1], ARGV[3])
return 2
`)

// Documents is the Redis store of the catalog's documents (documents.Store).
//
// Guards: each document key has a guard key in its own hash slot ("{doc}:guard")
// and every write is one Lua script that compares the guard before touching the
// document, so a delayed write (of a flusher that died with writes in flight) can
// never replace a newer document or bring a deleted one back. Guards expire
// GuardTTL after the document's last write: the flusher writes from committed rows
// and one flusher runs at a time, so only such in-flight writes can arrive out of
// order, and they arrive within seconds; expiring guards keeps Redis from holding
// one extra key per document forever.
type Documents struct {
	c        goredis.UniversalClient
	keys     Keyspace
	guardTTL time.Duration
}

var _ documents.Store = (*Documents)(nil)

// NewDocuments returns the store writing keys of ks through c; guardTTL 0 means
// DefaultGuardTTL.
func NewDocuments(c goredis.UniversalClient, ks Keyspace, guardTTL time.Duration) (*Documents, error) {
	if c == nil {
		return nil, errors.New("redis documents: nil client")
	}
	if ks.base == "" {
		return nil, errors.New("redis documents: empty key space")
	}
	if guardTTL <= 0 {
		guardTTL = DefaultGuardTTL
	}
	if guardTTL < time.Second {
		guardTTL = time.Second
	}
	return &Documents{c: c, keys: ks, guardTTL: guardTTL}, nil
}

// Keys returns the store's key space.
func (d *Documents) Keys() Keyspace { return d.keys }

func (d *Documents) key(w documents.Write) (string, error) {
	switch w.Kind {
	case documents.KindProgram:
		return d.keys.Program(w.ID), nil
	case documents.KindEpisodes:
		return d.keys.ProgramEpisodes(w.ID), nil
	case documents.KindEpisode:
		return d.keys.Episode(w.ID), nil
	}
	return "", fmt.Errorf("redis documents: unknown kind %d", w.Kind)
}

// Write implements documents.Store: one pipelined round trip of guarded scripts
// (EVALSHA; on a server that does not know the script yet it is loaded and the
// pipeline sent again, which changes nothing that was written).
func (d *Documents) Write(ctx context.Context, writes []documents.Write) ([]bool, error) {
	if len(writes) == 0 {
		return nil, nil
	}
	keys := make([]string, len(writes))
	for i, w := range writes {
		k, err := d.key(w)
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	ttl := strconv.Itoa(int(d.guardTTL / time.Second))
	run := func() ([]*goredis.Cmd, error) {
		cmds := make([]*goredis.Cmd, len(writes))
		_, err := d.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, w := range writes {
				cmds[i] = guardedWrite.EvalSha(ctx, p, []string{keys[i], Guard(keys[i])}, w.Guard, ttl, string(w.Value))
			}
			return nil
		})
		return cmds, err
	}
	cmds, err := run()
	if err != nil && isNoScript(err) {
		if err := d.loadScript(ctx); err != nil {
			return nil, err
		}
		cmds, err = run()
	}
	if err != nil {
		return nil, fmt.Errorf("redis documents: write %d: %w", len(writes), err)
	}
	changed := make([]bool, len(writes))
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, fmt.Errorf("redis documents: write %s: %w", keys[i], err)
		}
		changed[i] = n == 2
	}
	return changed, nil
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

// loadScript loads the guard script on every node that holds data.
func (d *Documents) loadScript(ctx context.Context) error {
	if cc, ok := d.c.(*goredis.ClusterClient); ok {
		if err := cc.ForEachShard(ctx, func(ctx context.Context, c *goredis.Client) error {
			return guardedWrite.Load(ctx, c).Err()
		}); err != nil {
			return fmt.Errorf("redis documents: load script: %w", err)
		}
		return nil
	}
	if err := guardedWrite.Load(ctx, d.c).Err(); err != nil {
		return fmt.Errorf("redis documents: load script: %w", err)
	}
	return nil
}

// Announce implements documents.Store: the counters, the position (SET … XX unless
// initial) and the message, in one pipeline; then the position check.
func (d *Documents) Announce(ctx context.Context, n documents.Notice, initial bool) (bool, error) {
	if n.Programs == nil {
		n.Programs = []string{}
	}
	if n.Episodes == nil {
		n.Episodes = []string{}
	}
	msg, err := json.Marshal(n)
	if err != nil {
		return false, fmt.Errorf("redis documents: encode notice: %w", err)
	}
	var set *goredis.BoolCmd
	_, err = d.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if n.Browse {
			p.Incr(ctx, d.keys.GenBrowse())
		}
		if n.Search {
			p.Incr(ctx, d.keys.GenSearch())
		}
		if initial {
			p.Set(ctx, d.keys.Position(), n.Position, 0)
		} else {
			set = p.SetXX(ctx, d.keys.Position(), n.Position, 0)
		}
		p.Publish(ctx, d.keys.Invalidate(), msg)
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return false, fmt.Errorf("redis documents: announce: %w", err)
	}
	if set == nil {
		return true, nil
	}
	ok, err := set.Result()
	if errors.Is(err, goredis.Nil) {
		return false, nil // XX found no key
	}
	if err != nil {
		return false, fmt.Errorf("redis documents: set position: %w", err)
	}
	return ok, nil
}

// Position implements documents.Store.
func (d *Documents) Position(ctx context.Context) (int64, bool, error) {
	pos, err := d.c.Get(ctx, d.keys.Position()).Int64()
	if errors.Is(err, goredis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("redis documents: read position: %w", err)
	}
	return pos, true, nil
}
