-- +goose Up
-- The documents outbox of the catalog projection (projections/catalog,
-- projections/documents).
--
-- The catalog projection records here, in the same transaction as its rows and its
-- checkpoint, which programs and episodes a batch changed; the documents flusher
-- writes their Redis documents from the committed rows and deletes the entries it
-- wrote. Nothing a committed batch changed can be missed by Redis, and Redis being
-- down never holds back the PostgreSQL read models: entries wait here. It is a
-- queue, not a read model: its contents depend on when the flusher ran.
--
-- episode_id NULL: the program's own document and its episode list; all_episodes:
-- every episode document of the program as well (its visibility changed).
-- position is the global position of the batch's newest event.
CREATE TABLE catalog_documents_outbox_v1 (
    id           bigserial PRIMARY KEY,
    program_id   uuid      NOT NULL,
    episode_id   uuid,
    all_episodes boolean   NOT NULL DEFAULT false,
    position     bigint    NOT NULL
);

-- +goose Down
DROP TABLE catalog_documents_outbox_v1;
