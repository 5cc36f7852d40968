package opscli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	mmredis "github.com/mediamesh/mediamesh/infra/redis"
	"github.com/mediamesh/mediamesh/projections/documents"
	"github.com/mediamesh/mediamesh/projections/rebuild"
)

// DocumentsSink is the Redis documents of the catalog projection as a rebuild
// sink (rebuild.WorkerSink and rebuild.ReadySink), for the composition root:
//
//   - Run runs the documents flusher of each catalog version the projection
//     manager runs, writing that version's key space (mm:catalog:v<n>:…) from its
//     own outbox (catalog_documents_outbox_v<n>; give the catalog projection
//     catalog.WithDocuments() and catalog.OutboxTable as an extra table). With the
//     manager, start no flusher separately.
//   - Ready lets the cut-over happen once the new version's Redis position (every
//     change up to it is in Redis) has reached the new version's checkpoint or the
//     live version's own Redis position: Redis never trails more after the switch
//     than it did before.
//   - Drop deletes a version's key space (its documents, guards, counters and
//     position) with SCAN and UNLINK, on every master of a cluster.
type DocumentsSink struct {
	pool     *pgxpool.Pool
	client   goredis.UniversalClient
	keyspace func(v int) mmredis.Keyspace
	guardTTL time.Duration
	opts     documents.Options
}

var (
	_ rebuild.WorkerSink = (*DocumentsSink)(nil)
	_ rebuild.ReadySink  = (*DocumentsSink)(nil)
)

// NewDocumentsSink returns the sink over pool and client. keyspace names each
// version's key space (nil: mmredis.CatalogKeyspace); opts are the flushers'
// options (their Version is set per version).
func NewDocumentsSink(pool *pgxpool.Pool, client goredis.UniversalClient, keyspace func(v int) mmredis.Keyspace,
	guardTTL time.Duration, opts documents.Options) (*DocumentsSink, error) {
	if pool == nil || client == nil {
		return nil, errors.New("documents sink: nil pool or client")
	}
	if keyspace == nil {
		keyspace = mmredis.CatalogKeyspace
	}
	return &DocumentsSink{pool: pool, client: client, keyspace: keyspace, guardTTL: guardTTL, opts: opts}, nil
}

func (s *DocumentsSink) store(v int) (*mmredis.Documents, error) {
	return mmredis.NewDocuments(s.client, s.keyspace(v), s.guardTTL)
}

// Prepare implements rebuild.Sink: the flusher writes the key space as the new
// version's outbox fills (a fresh rebuild has dropped it first).
func (s *DocumentsSink) Prepare(context.Context, int, int) error { return nil }

// Run implements rebuild.WorkerSink.
func (s *DocumentsSink) Run(ctx context.Context, v int) error {
	st, err := s.store(v)
	if err != nil {
		return err
	}
	o := s.opts
	o.Version = v
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	f, err := documents.New(s.pool, st, o)
	if err != nil {
		return err
	}
	return f.Run(ctx)
}

// Ready implements rebuild.ReadySink.
func (s *DocumentsSink) Ready(ctx context.Context, _ pgx.Tx, live, next int, position int64) (bool, error) {
	nst, err := s.store(next)
	if err != nil {
		return false, err
	}
	npos, ok, err := nst.Position(ctx)
	if err != nil || !ok {
		return false, err
	}
	if npos >= position {
		return true, nil
	}
	lst, err := s.store(live)
	if err != nil {
		return false, err
	}
	lpos, ok, err := lst.Position(ctx)
	if err != nil {
		return false, err
	}
	return ok && npos >= lpos, nil
}

// Drop implements rebuild.Sink.
func (s *DocumentsSink) Drop(ctx context.Context, v int) error {
	base := s.keyspace(v).Base()
	patterns := []string{base + ":*", "{" + base + ":*"} // documents and their guards
	drop := func(ctx context.Context, c goredis.UniversalClient) error {
		for _, p := range patterns {
			var cursor uint64
			for {
				keys, next, err := c.Scan(ctx, cursor, p, 1000).Result()
				if err != nil {
					return fmt.Errorf("scan %s: %w", p, err)
				}
				if len(keys) > 0 {
					// One UNLINK per key, pipelined: in a cluster the keys of a page
					// live in different slots, which one multi-key command refuses.
					if _, err := c.Pipelined(ctx, func(pipe goredis.Pipeliner) error {
						for _, k := range keys {
							pipe.Unlink(ctx, k)
						}
						return nil
					}); err != nil {
						return fmt.Errorf("unlink %d keys of %s: %w", len(keys), p, err)
					}
				}
				if next == 0 {
					break
				}
				cursor = next
			}
		}
		return nil
	}
	if cc, ok := s.client.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return drop(ctx, c) })
	}
	return drop(ctx, s.client)
}
