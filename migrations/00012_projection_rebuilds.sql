-- +goose Up
-- Blue/green rebuilds of projections (projections/rebuild).
--
-- One row per rebuild: the projection name, the version that served when it
-- started (from_version) and the version it builds beside it (to_version, whose
-- sinks are named with it: catalog_programs_v2, mm:catalog:v2:, programs_v2). The
-- row is the rebuild's durable state: a process that dies while driving it leaves it
-- "running" with an expired lease, and any projector takes it over and resumes from
-- to_version's own checkpoint in projection_checkpoints.
--
-- status is what the API reports (running, completed, failed); phase is where a
-- running or completed rebuild is (replaying, switched, retired). processed and
-- total count events (applied by to_version / in the global log), rate is the
-- recent apply rate in events per second, for the ETA. At most one rebuild per
-- name runs at a time (the partial unique index).
--
-- The switch freezes the replaced version exactly where it was: its checkpoint is
-- set to the largest position in the same transaction (so its runtime, wherever
-- it runs, skips every later event) and its real position is kept here in
-- frozen_position. It keeps its sinks until retire_after (a grace period for
-- queries still reading it), then they are dropped and retired_at is set; retired
-- versions are never run again.
CREATE TABLE projection_rebuilds (
    id              uuid        PRIMARY KEY,
    name            text        NOT NULL,
    from_version    integer     NOT NULL CHECK (from_version >= 1),
    to_version      integer     NOT NULL CHECK (to_version > from_version),
    status          text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    phase           text        NOT NULL DEFAULT 'replaying' CHECK (phase IN ('replaying', 'switched', 'retired')),
    processed       bigint      NOT NULL DEFAULT 0,
    total           bigint      NOT NULL DEFAULT 0,
    rate            double precision NOT NULL DEFAULT 0,
    frozen_position bigint,
    error           text,
    owner           text,
    lease_until     timestamptz,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    switched_at     timestamptz,
    finished_at     timestamptz,
    retire_after    timestamptz,
    retired_at      timestamptz
);
CREATE UNIQUE INDEX projection_rebuilds_running ON projection_rebuilds (name) WHERE status = 'running';
CREATE INDEX projection_rebuilds_name_started ON projection_rebuilds (name, started_at DESC);

-- +goose Down
DROP TABLE projection_rebuilds;
