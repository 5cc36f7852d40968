// Package migrations holds MediaMesh's PostgreSQL schema as numbered SQL files
// (goose format: "-- +goose Up" / "-- +goose Down"), embedded into the binary.
//
// Numbering: one file per change, never edited once landed. Every sink that a
// rebuildable projection owns carries its version in its name (e.g. catalog_programs_v1).
package migrations

import "embed"

// FS is the set of migration files.
//
//go:embed *.sql
var FS embed.FS
