// Package event defines the change event tidemark publishes, one NATS message per row change
// of the products table: the [Change] type, its two JSON envelopes (tidemark's own, documented
// in event.schema.json, and Debezium's) and the [LSN] positions it carries.
//
// The replicator writes events with [Change.AppendJSON] or [Change.AppendDebezium]; [Decode]
// (or a [Decoder], for a stream) reads either envelope back into a Change, which is how
// tidemark's encoder and any subscriber read them. [Change.Position] and [Position.Compare]
// put changes in commit order, so a consumer can drop an event older than one it applied.
// A full snapshot of a supplier is an [Epoch] between an epoch_open and an epoch_close event;
// at the close, [Epoch.Stale] tells which of the supplier's products are gone.
//
// The package depends on nothing outside the standard library.
package event
