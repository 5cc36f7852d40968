// Package scaleout holds only tests: MediaMesh's scale-out paths run against real
// distributed servers started from this machine's binaries by infra/testservers — a
// six-node Redis Cluster for the documents and caches, a PostgreSQL primary with a
// streaming replica for the query role's reads.
package scaleout
