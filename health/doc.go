// Package health inspects a Tidemark deployment: Doctor's checks say whether PostgreSQL and NATS
// are set up right for the pipeline, and Gather reports where a running pipeline stands (slot,
// checkpoint, stream, consumers, vectors).
package health
