// Package redisstore is the go-redis adapter of the query side's Redis ports:
// cache.Remote (documents, list results, rankings, invalidations) and the ranking
// sink of projections/engagement. It works on any go-redis UniversalClient (one
// server or a Cluster: every multi-key command here stays on one key, or is a
// pipeline of single-key commands).
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Store implements cache.Remote and engagement.RankingSink.
type Store struct {
	c goredis.UniversalClient
	// PingEvery is how long a quiet subscription waits before it pings Redis to
	// find out whether the connection still lives (30 s).
	pingEvery time.Duration
}

// New returns the adapter over c.
func New(c goredis.UniversalClient) (*Store, error) {
	if c == nil {
		return nil, errors.New("redisstore: nil client")
	}
	return &Store{c: c, pingEvery: 30 * time.Second}, nil
}

// MGet implements cache.Remote. Keys are read one command per key in one pipeline,
// so they may live in different Cluster slots.
func (s *Store) MGet(ctx context.Context, keys ...string) ([][]byte, error) {
	out := make([][]byte, len(keys))
	if len(keys) == 1 {
		b, err := s.c.Get(ctx, keys[0]).Bytes()
		if errors.Is(err, goredis.Nil) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", keys[0], err)
		}
		out[0] = b
		return out, nil
	}
	cmds := make([]*goredis.StringCmd, len(keys))
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, fmt.Errorf("get %d keys: %w", len(keys), err)
	}
	for i, c := range cmds {
		b, err := c.Bytes()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", keys[i], err)
		}
		out[i] = b
	}
	return out, nil
}

// Set implements cache.Remote.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.c.Set(ctx, key, value, ttl).Err(); err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	return nil
}

// RevRange implements cache.Remote.
func (s *Store) RevRange(ctx context.Context, key string, offset, limit int) ([]string, int, error) {
	var (
		rng  *goredis.StringSliceCmd
		card *goredis.IntCmd
	)
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		rng = p.ZRevRange(ctx, key, int64(offset), int64(offset+limit-1))
		card = p.ZCard(ctx, key)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("range %s: %w", key, err)
	}
	return rng.Val(), int(card.Val()), nil
}

// Subscribe implements cache.Remote. It reads with a timeout and pings a quiet
// connection, so a Redis that vanished without closing the connection is noticed
// within the ping interval instead of never.
func (s *Store) Subscribe(ctx context.Context, channel string, ready func(), handle func([]byte)) error {
	ps := s.c.Subscribe(ctx, channel)
	defer ps.Close()
	// A blocked read does not watch ctx: closing the subscription ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	if _, err := ps.Receive(ctx); err != nil {
		return fmt.Errorf("subscribe %s: %w", channel, err)
	}
	ready()
	for {
		msg, err := ps.ReceiveTimeout(ctx, s.pingEvery)
		if ctx.Err() != nil {
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if err := ps.Ping(ctx); err != nil {
				return fmt.Errorf("subscription %s: ping: %w", channel, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("subscription %s: %w", channel, err)
		}
		if m, ok := msg.(*goredis.Message); ok {
			handle([]byte(m.Payload))
		}
	}
}

// ReplaceRanking implements the ranking sink of projections/engagement: the sorted
// set key becomes exactly ids with scores (deleted when ids is empty) and expires
// after ttl, in one MULTI/EXEC, so a reader sees the old ranking or the new one.
func (s *Store) ReplaceRanking(ctx context.Context, key string, ids []string, scores []float64, ttl time.Duration) error {
	if len(ids) != len(scores) {
		return fmt.Errorf("replace ranking %s: %d ids and %d scores", key, len(ids), len(scores))
	}
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Del(ctx, key)
		if len(ids) == 0 {
			return nil
		}
		members := make([]goredis.Z, len(ids))
		for i, id := range ids {
			members[i] = goredis.Z{Score: scores[i], Member: id}
		}
		p.ZAdd(ctx, key, members...)
		if ttl > 0 {
			p.Expire(ctx, key, ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replace ranking %s: %w", key, err)
	}
	return nil
}
