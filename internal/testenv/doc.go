// Package testenv gives tests real servers: a PostgreSQL cluster with wal_level=logical shared
// by a test binary (each test gets its own database in it) and an embedded nats-server with
// JetStream per test. Tests that kill or restart a server ask for a cluster of their own.
// Tests that run in parallel (t.Parallel) and create replication slots, whose names are
// cluster-wide, take a cluster no other running test uses (Lane).
//
// A package using it runs its tests through Main, so the shared cluster is stopped when the
// tests end:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
package testenv
