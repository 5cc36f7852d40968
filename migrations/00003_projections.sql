-- +goose Up
-- Projection runtime bookkeeping (projections/runtime).
--
-- One checkpoint per projection name and version: the global position of the last
-- event the projection has applied, written in the same transaction as the
-- projection's own writes. "serving" marks the version that answers reads (a
-- rebuild writes a new version beside it and flips the flag at cut-over); at most
-- one version of a name serves.
CREATE TABLE projection_checkpoints (
    name       text        NOT NULL,
    version    integer     NOT NULL CHECK (version >= 1),
    position   bigint      NOT NULL DEFAULT 0,
    serving    boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX projection_checkpoints_serving ON projection_checkpoints (name) WHERE serving;

-- Events a projection could not apply (poison events), and the later events of the
-- same stream that were parked behind them so a stream is never applied out of
-- order. Replay re-applies them in position order and deletes what it applied.
-- data is bytea: a poison event's payload is kept byte for byte, valid JSON or not.
CREATE TABLE projection_dead_letters (
    id             bigserial   PRIMARY KEY,
    projection     text        NOT NULL,
    version        integer     NOT NULL,
    position       bigint      NOT NULL,
    event_id       text        NOT NULL,
    type           text        NOT NULL,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    occurred_at    timestamptz NOT NULL,
    metadata       bytea       NOT NULL,
    data           bytea       NOT NULL,
    error          text        NOT NULL,
    parked         boolean     NOT NULL DEFAULT false,
    attempts       integer     NOT NULL DEFAULT 1,
    failed_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (projection, version, position)
);
CREATE INDEX projection_dead_letters_stream ON projection_dead_letters (projection, version, stream_id, position);

-- +goose Down
DROP TABLE projection_dead_letters;
DROP TABLE projection_checkpoints;
