-- +goose Up
-- Checkpoints of the side-effecting processors (projections/thumbnails): per
-- processor name, the global position up to which every event has been handled.
-- Unlike projection_checkpoints there is no version and no serving flag: a
-- processor is never rebuilt (its effects are recorded as events, e.g.
-- AssetProcessed), so it has one checkpoint that only moves forward. Written only by
-- the processor holding the advisory lock for its name, on the connection that
-- holds it. Its dead letters go to projection_dead_letters under the processor's
-- name and version 1.
CREATE TABLE processor_checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE processor_checkpoints;
