-- +goose Up
-- Idempotency records of the command API (infra/postgres/idempotency.go).
--
-- One row per scoped key (a hash of caller, method, route pattern and the client's
-- Idempotency-Key). While the first request runs, claim_id names it and lease_until
-- bounds how long it may hold the key; a crashed request's lease lapses and a retry
-- with the same request_hash may reclaim the key. Once the request completes,
-- response holds the stored HTTP response and claim_id/lease_until are cleared.
-- A row past expires_at (24 h after it was claimed) counts as absent.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    request_hash bytea       NOT NULL,
    claim_id     text,
    lease_until  timestamptz,
    response     bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    CHECK ((response IS NULL) = (claim_id IS NOT NULL))
);

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

-- +goose Down
DROP TABLE idempotency_keys;
