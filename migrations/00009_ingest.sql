-- +goose Up
-- Ingest jobs (command/ingest, infra/postgres/ingestjobs.go). Plain rows, not
-- event-sourced: they describe the ingest process, not the catalog.
--
-- ingest_jobs holds what the submission (the upload being parsed) knows: items read
-- so far, how many were enqueued and how many rejected by validation, whether the
-- feed was read to its end, and why it broke off. updated_at is the submission's
-- heartbeat: a job that is not done and has not moved for a while was cut short.
--
-- ingest_job_items holds one row per item outcome, keyed by (job_id, item_index):
-- every item a worker finished (ok or not) and the first 1,000 items rejected by
-- validation. Counting rows keyed by item is what keeps the job's counts exact when
-- the queue delivers a message twice, and workers never update the job's own row
-- (which would serialize them all on one row lock). There is deliberately no foreign
-- key: checking it would lock the job's row for every outcome.
CREATE TABLE ingest_jobs (
    job_id          uuid        PRIMARY KEY,
    actor           text        NOT NULL,
    content_type    text        NOT NULL,
    items           integer     NOT NULL DEFAULT 0 CHECK (items >= 0),
    enqueued        integer     NOT NULL DEFAULT 0 CHECK (enqueued >= 0),
    rejected        integer     NOT NULL DEFAULT 0 CHECK (rejected >= 0),
    submitted       boolean     NOT NULL DEFAULT false,
    feed_error_line bigint,
    feed_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE INDEX ingest_jobs_created_at_idx ON ingest_jobs (created_at);

CREATE TABLE ingest_job_items (
    job_id      uuid        NOT NULL,
    item_index  integer     NOT NULL CHECK (item_index >= 0),
    -- 'validate': rejected while the feed was read; 'apply': a worker's outcome.
    stage       text        NOT NULL CHECK (stage IN ('validate', 'apply')),
    ok          boolean     NOT NULL,
    line        bigint      NOT NULL,
    external_id text        NOT NULL DEFAULT '',
    message     text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, item_index),
    CHECK (ok = (message IS NULL)),
    CHECK (stage = 'apply' OR NOT ok)
);

-- The errors of a job in feed order, for GET /v1/ingest/{job_id}.
CREATE INDEX ingest_job_items_errors_idx ON ingest_job_items (job_id, item_index) WHERE NOT ok;

-- +goose Down
DROP TABLE ingest_job_items;
DROP TABLE ingest_jobs;
