-- +goose Up
-- Engagement (projections/engagement): plays counted per program per hour, and the
-- trending and popular rankings computed from them. Plays are telemetry that never
-- enters the event store, so these bucket tables are the source of truth: they
-- cannot be rebuilt, and nothing but the engagement projection writes them.
--
-- engagement_play_sessions_v1 makes a play count at most once per session, program
-- and hour: a play is counted only when its row is new (INSERT … ON CONFLICT DO
-- NOTHING in the same statement as the bucket increment), so a redelivered message
-- or a player that reports every few seconds adds nothing. Rows of hours long past
-- are deleted by the refresher (a play is never delivered that late).
CREATE TABLE engagement_play_sessions_v1 (
    program_id uuid        NOT NULL,
    hour       timestamptz NOT NULL,
    session_id text        NOT NULL,
    PRIMARY KEY (program_id, hour, session_id)
);
CREATE INDEX engagement_play_sessions_v1_hour ON engagement_play_sessions_v1 (hour);

CREATE TABLE engagement_plays_v1 (
    program_id uuid        NOT NULL,
    hour       timestamptz NOT NULL,
    plays      bigint      NOT NULL CHECK (plays > 0),
    PRIMARY KEY (program_id, hour)
);
CREATE INDEX engagement_plays_v1_hour ON engagement_plays_v1 (hour, program_id);

-- The last computed rankings (the PostgreSQL fallback of the Redis sorted sets):
-- per ranking ('trending', 'popular') and category ('' for all categories), the
-- top programs in rank order. Replaced as a whole by every refresh.
CREATE TABLE engagement_rankings_v1 (
    ranking      text             NOT NULL,
    category     text             NOT NULL,
    rank         integer          NOT NULL CHECK (rank >= 1),
    program_id   uuid             NOT NULL,
    score        double precision NOT NULL,
    refreshed_at timestamptz      NOT NULL,
    PRIMARY KEY (ranking, category, rank)
);

-- Discovery's browse orders on the catalog's published programs
-- (infra/postgres/readmodel.Catalog.Browse): newest first and by title, overall and
-- per category, so a page is an index range scan rather than a sort of the catalog.
CREATE INDEX catalog_programs_v1_discovery_recent ON catalog_programs_v1 (published_at DESC NULLS LAST, id) WHERE status = 'published';
CREATE INDEX catalog_programs_v1_discovery_title ON catalog_programs_v1 (title, id) WHERE status = 'published';
CREATE INDEX catalog_programs_v1_discovery_category_recent ON catalog_programs_v1 (category, published_at DESC NULLS LAST, id) WHERE status = 'published';
CREATE INDEX catalog_programs_v1_discovery_category_title ON catalog_programs_v1 (category, title, id) WHERE status = 'published';

-- +goose Down
DROP INDEX catalog_programs_v1_discovery_category_title;
DROP INDEX catalog_programs_v1_discovery_category_recent;
DROP INDEX catalog_programs_v1_discovery_title;
DROP INDEX catalog_programs_v1_discovery_recent;
DROP TABLE engagement_rankings_v1;
DROP TABLE engagement_plays_v1;
DROP TABLE engagement_play_sessions_v1;
