-- +goose Up
-- The replay watermark of a projection version (projections/runtime).
--
-- replayed_through is the highest global position up to which the version has
-- applied every event of the event store's global log in position order: it is
-- raised with position by the batches of the ordered mode (a rebuild's replay, or
-- the embedded mode), as long as position has only ever been moved that way, so it
-- is a true watermark. In the Kafka mode the version's consumer group (which a
-- rebuilt version starts at the oldest offset) skips the events at or below it
-- without applying them: they were applied by the replay. 0 (never fed in order)
-- skips nothing.
ALTER TABLE projection_checkpoints ADD COLUMN replayed_through bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE projection_checkpoints DROP COLUMN replayed_through;
