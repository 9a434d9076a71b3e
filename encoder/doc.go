// Package encoder keeps embedding vectors of the catalogue fresh: workers share a durable
// JetStream pull consumer on the PRODUCTS stream, fetch change events in batches, coalesce
// them per product, embed only the texts that changed, and write each batch to the vector
// table product_embeddings in one statement whose writes apply only when newer, acking after
// the commit. Poison events go to the PRODUCTS_DLQ stream.
package encoder
