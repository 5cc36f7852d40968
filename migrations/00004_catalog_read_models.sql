-- +goose Up
-- Catalog and editorial read models (projections/catalog, projections/editorial),
-- rebuilt from the event store. Every table carries its projection version in its
-- name; a rebuild creates the next version beside it.
--
-- version is the program stream's version of the last event applied to the row: an
-- event whose stream version is not above it has already been applied and changes
-- nothing (redelivery is normal). Times come from the events, never from now(), so
-- a rebuild reproduces every row exactly.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE catalog_programs_v1 (
    id            uuid        PRIMARY KEY,
    title         text        NOT NULL,
    description   text        NOT NULL DEFAULT '',
    category      text        NOT NULL,
    language      text        NOT NULL,
    tags          text[]      NOT NULL DEFAULT '{}',
    external_id   text,
    status        text        NOT NULL CHECK (status IN ('draft', 'published', 'unpublished', 'archived')),
    published_at  timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    -- published episodes (discovery shows a program only while it is published).
    episode_count integer     NOT NULL DEFAULT 0,
    images        jsonb       NOT NULL DEFAULT '{}',
    version       bigint      NOT NULL
);
CREATE INDEX catalog_programs_v1_status_published ON catalog_programs_v1 (status, published_at DESC, id);
CREATE INDEX catalog_programs_v1_category_language ON catalog_programs_v1 (category, language);
CREATE INDEX catalog_programs_v1_tags ON catalog_programs_v1 USING gin (tags);

CREATE TABLE catalog_episodes_v1 (
    id               uuid        PRIMARY KEY,
    program_id       uuid        NOT NULL,
    title            text        NOT NULL,
    number           integer     NOT NULL,
    season           integer     NOT NULL DEFAULT 1,
    description      text        NOT NULL DEFAULT '',
    duration_seconds integer     NOT NULL,
    external_id      text,
    status           text        NOT NULL CHECK (status IN ('draft', 'published', 'unpublished', 'archived')),
    published_at     timestamptz,
    images           jsonb       NOT NULL DEFAULT '{}',
    version          bigint      NOT NULL
);
CREATE INDEX catalog_episodes_v1_program ON catalog_episodes_v1 (program_id, season, number);

-- Visible (published) programs per category, kept exact by the catalog projection
-- in the same transaction as the program rows; categories without a visible
-- program have no row.
CREATE TABLE catalog_categories_v1 (
    slug          text    PRIMARY KEY,
    program_count integer NOT NULL CHECK (program_count > 0)
);

CREATE TABLE editorial_programs_v1 (
    id           uuid        PRIMARY KEY,
    title        text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    category     text        NOT NULL,
    language     text        NOT NULL,
    tags         text[]      NOT NULL DEFAULT '{}',
    external_id  text,
    status       text        NOT NULL CHECK (status IN ('draft', 'published', 'unpublished', 'archived')),
    published_at timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    version      bigint      NOT NULL
);
CREATE INDEX editorial_programs_v1_updated ON editorial_programs_v1 (updated_at DESC, id);
CREATE INDEX editorial_programs_v1_status_updated ON editorial_programs_v1 (status, updated_at DESC, id);
CREATE INDEX editorial_programs_v1_title_trgm ON editorial_programs_v1 USING gin (title gin_trgm_ops);
CREATE INDEX editorial_programs_v1_external_id ON editorial_programs_v1 (external_id);

-- +goose Down
DROP TABLE editorial_programs_v1;
DROP TABLE catalog_categories_v1;
DROP TABLE catalog_episodes_v1;
DROP TABLE catalog_programs_v1;
