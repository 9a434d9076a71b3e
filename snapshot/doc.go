// Package snapshot re-publishes the current rows of products, one supplier at a time, while
// the replicator keeps streaming and writers keep writing, without locks. It reads keyset
// chunks between low and high watermarks written to the WAL (DBLog's method); the replicator
// drops chunk rows whose keys changed between the two, so a snapshot row never lands after a
// newer change of the same product. See replication.SnapshotChunk.
package snapshot
