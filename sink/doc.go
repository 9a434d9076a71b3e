// Package sink publishes replication changes to NATS JetStream: it sets up the PRODUCTS
// stream and the checkpoint bucket, names subjects and message ids, and publishes
// asynchronously with a bounded number of messages awaiting acknowledgement.
package sink
