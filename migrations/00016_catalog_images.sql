-- +goose Up
-- Artwork slots of the catalog projection (projections/catalog): one row per
-- poster, thumbnail or backdrop of a program or an episode, folded from the asset
-- streams (AssetUploaded, AssetProcessed). The images column of
-- catalog_programs_v1 and catalog_episodes_v1 is recomputed from these rows in the
-- same transaction, so it is a pure function of the slots: a program or episode
-- row that appears after its artwork's events picks them up then.
--
-- version is the asset stream's version of the last event applied to the slot (a
-- slot has one asset for ever: its pointer stream never changes), so an event
-- delivered again changes nothing. upload_version is the version of the
-- AssetUploaded the slot shows: an AssetProcessed of another upload is stale and
-- ignored. The URLs are paths under /media/ ("/media/originals/…"); the query
-- API makes them absolute. Like every catalog sink, a rebuild creates the next
-- version (catalog_images_v2) beside it.
CREATE TABLE catalog_images_v1 (
    owner_kind     text   NOT NULL CHECK (owner_kind IN ('program', 'episode')),
    owner_id       uuid   NOT NULL,
    kind           text   NOT NULL CHECK (kind IN ('poster', 'thumbnail', 'backdrop')),
    program_id     uuid   NOT NULL,
    asset_id       uuid   NOT NULL,
    version        bigint NOT NULL,
    upload_version bigint NOT NULL,
    original       text   NOT NULL,
    small          text   NOT NULL,
    medium         text   NOT NULL,
    large          text   NOT NULL,
    PRIMARY KEY (owner_kind, owner_id, kind)
);

-- +goose Down
DROP TABLE catalog_images_v1;
