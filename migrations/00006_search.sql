-- +goose Up
-- Search (projections/search and its embedded adapter, infra/search/postgres).
--
-- The index tables themselves (search_<index>, e.g. search_programs_v1) are created
-- by the adapter's EnsureIndex, because a rebuild creates the next version at run
-- time; this file installs what they rely on.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public;

-- search_norm folds text for matching: accents removed, lower case. unaccent() is
-- only STABLE (its dictionary could be edited); pinned to the extension's default
-- dictionary this wrapper may be declared IMMUTABLE, which stored tsvectors and
-- index expressions need. Changing the dictionary requires rebuilding the index.
CREATE FUNCTION search_norm(text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1)) $$;

-- The search projection's fold of each program stream (events are deltas; the
-- documents are derived from this state). version is the program stream version
-- of the last event applied: an event at or below it is a redelivery.
CREATE TABLE search_state_v1 (
    program_id uuid   PRIMARY KEY,
    version    bigint NOT NULL,
    state      jsonb  NOT NULL
);

-- +goose Down
DROP TABLE search_state_v1;
DROP FUNCTION search_norm(text);
