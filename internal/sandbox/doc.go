// Package sandbox runs throw-away servers for tests, benchmarks and the demo: a PostgreSQL
// cluster (initdb into a temp dir, a port reserved for it, wal_level=logical) and an embedded
// nats-server with JetStream on a port it binds itself. Both can be stopped, killed and started
// again on the same port and data, so tests can exercise restarts and crashes against the real
// thing.
package sandbox
