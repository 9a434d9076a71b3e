// Command tidemark loads supplier catalogues into PostgreSQL, streams every product change from
// the write-ahead log to NATS JetStream, and keeps embedding vectors of the catalogue fresh.
package main
