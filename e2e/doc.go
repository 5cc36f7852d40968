// Package e2e holds MediaMesh's end-to-end and crash tests (test files only): a
// command over HTTP through the real api and command handlers, the event store, the
// projection runtime (embedded: the event store's global log; Kafka: the relay, an
// in-process kfake broker and consumer groups), into the PostgreSQL read models, the
// Redis documents and the search index; and the projector killed with SIGKILL at
// random moments (a re-executed test binary, TestHelperProjector) ending with read
// models equal, by checksum, to a clean projection of the same events.
//
// It needs PostgreSQL and Redis on 127.0.0.1 (see infra/postgres/pgtest and
// infra/redis/redistest); Kafka is in-process.
package e2e
