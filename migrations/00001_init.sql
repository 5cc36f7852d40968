-- +goose Up
-- The schema is built up by the files that follow; this one only marks the start.
SELECT 1;

-- +goose Down
SELECT 1;
