// Package events is MediaMesh's wire contract: the catalog's event types with their
// explicit, versioned type names, the envelope that carries an event with its
// metadata, the JSON codec with its upcaster hook, and the small set of types that
// every event store adapter and every reader of the global log share.
//
// Stored type names are data ("mediamesh.program.published.v1"), never derived from
// Go identifiers: renaming a struct must not orphan stored events. A change of shape
// gets a new type name and an upcaster from the old one.
//
// This package imports nothing of MediaMesh's own.
package events
