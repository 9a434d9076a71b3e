// Package snapshot re-publishes the current rows of products, one supplier at a time, while
// the replicator keeps streaming and writers keep writing, without locks. It reads keyset
// chunks between low and high watermarks written to the WAL (DBLog's method); the replicator
// drops chunk rows whose keys changed between the two, so a snapshot row never lands after a
// newer change of the same product. See replication.SnapshotChunk. Each snapshot of a supplier
// is an epoch in the stream, opened before its first chunk and closed with its last, so that
// subscribers can drop the products it did not carry (see event.Epoch).
package snapshot
