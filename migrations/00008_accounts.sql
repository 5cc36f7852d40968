-- +goose Up
-- User accounts and refresh tokens (command/accounts, infra/postgres/accounts.go).
-- Not event-sourced: see command/accounts' package doc.
--
-- Emails are stored normalized (trimmed, lower-cased) and unique: the unique index
-- is what makes two concurrent registrations of one email a 409 for one of them.
CREATE TABLE accounts (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL CHECK (email = lower(btrim(email)) AND length(email) BETWEEN 3 AND 254),
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          text        NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
    password_hash bytea       NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE UNIQUE INDEX accounts_email_key ON accounts (email);

-- One family per login. Every operation on a family's tokens locks its row first,
-- so rotation, reuse detection and logout of one family are serialized.
CREATE TABLE refresh_token_families (
    id         uuid        PRIMARY KEY,
    account_id uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);

CREATE INDEX refresh_token_families_account_id_idx ON refresh_token_families (account_id);

-- Refresh tokens by their SHA-256 (the tokens themselves are never stored). A
-- spent token stays until its family is swept, so that presenting it again is
-- recognized as reuse and revokes the family.
CREATE TABLE refresh_tokens (
    token_hash bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    family_id  uuid        NOT NULL REFERENCES refresh_token_families (id) ON DELETE CASCADE,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    spent_at   timestamptz
);

CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);

-- +goose Down
DROP TABLE refresh_tokens;
DROP TABLE refresh_token_families;
DROP TABLE accounts;
