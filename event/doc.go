// Package event defines the change event tidemark publishes, one NATS message per row change
// of the products table: the [Change] type, its two JSON envelopes (tidemark's own, documented
// in event.schema.json, and Debezium's) and the [LSN] positions it carries.
//
// Subscribers import it to read the stream; tidemark's replicator writes events with it. It
// depends on nothing outside the standard library.
package event
