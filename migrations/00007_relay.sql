-- +goose Up
-- The relay's checkpoint (projections/relay): per relay name, the global position up
-- to which every event of the event store has been published to the bus and
-- acknowledged by the brokers. Written only by the relay holding the advisory lock for
-- that name, on the very connection that holds it, and only ever moved forward.
CREATE TABLE relay_checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE relay_checkpoints;
