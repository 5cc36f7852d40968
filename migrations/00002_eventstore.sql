-- +goose Up
-- The PostgreSQL event store (infra/eventstore/postgres).
--
-- eventstore_streams holds each stream's current version: the row an append locks to
-- check its expected version. eventstore_events is the log itself.
--
-- position is the event's place in the global log: (writer's xid8 << 20) | ordinal of
-- the event within its append, so positions order by transaction id and then by order
-- within the append. Readers of the global log only return positions below
-- (pg_snapshot_xmin(pg_current_snapshot()) << 20): every transaction below that xmin
-- has finished, and every one that commits later has a higher id, so a reader never
-- skips an event that a concurrent transaction commits late. The primary key on
-- position is the index that ReadAll and the subscription scan.
CREATE TABLE eventstore_streams (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL CHECK (version > 0)
);

CREATE TABLE eventstore_events (
    position    bigint      PRIMARY KEY CHECK (position > 0),
    event_id    uuid        NOT NULL,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL CHECK (version > 0),
    type        text        NOT NULL,
    -- json (not jsonb) keeps the payload byte for byte as it was appended.
    data        json,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT eventstore_events_event_id_key UNIQUE (event_id),
    CONSTRAINT eventstore_events_stream_version_key UNIQUE (stream_id, version)
);

-- eventstore_readable_bound() is the first position that readers of the global log
-- may not return yet. It refines pg_snapshot_xmin(pg_current_snapshot()): the
-- smallest id among the snapshot's in-progress transactions, leaving out those that
-- pg_stat_activity shows belong to another database (they cannot write these
-- tables), so a long transaction elsewhere on the server does not stall the log.
-- An in-progress id that pg_stat_activity does not show (finished since the
-- snapshot, a prepared transaction, or hidden by permissions) counts as ours, so
-- the bound is never too high. With none left it is the snapshot's xmax. Being
-- STABLE, it uses the calling statement's snapshot, the one that reads the events.
-- +goose StatementBegin
CREATE FUNCTION eventstore_readable_bound() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT min(x::text::bigint)
           FROM pg_snapshot_xip(s.snap) AS x
          WHERE x::text::bigint % 4294967296 NOT IN (
                SELECT a.backend_xid::text::bigint
                  FROM pg_stat_get_activity(NULL) AS a
                 WHERE a.backend_xid IS NOT NULL
                   AND a.datid IS DISTINCT FROM (SELECT d.oid FROM pg_database d WHERE d.datname = current_database()))),
        pg_snapshot_xmax(s.snap)::text::bigint) << 20
    FROM (SELECT pg_current_snapshot() AS snap) AS s
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION eventstore_readable_bound();
DROP TABLE eventstore_events;
DROP TABLE eventstore_streams;
