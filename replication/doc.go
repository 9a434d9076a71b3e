// Package replication tails PostgreSQL's write-ahead log through a logical replication slot
// (pgoutput) and turns every row change of the published tables into an [event.Change], the
// event tidemark publishes. It sets up the publication and slot, runs the receive loop, tracks
// the written and flushed LSNs, and hands changes to a [Publisher]; it knows nothing of NATS.
package replication
