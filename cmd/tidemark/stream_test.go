package main

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestStreamFlagNamesOneStreamForEveryCommand: replicate, encode and tail given the same
// --stream work on that stream, and none creates or waits for PRODUCTS.
func TestStreamFlagNamesOneStreamForEveryCommand(t *testing.T) {
	t.Parallel()
	e := newReplEnv(t)
	js := e.js(t)
	ctx := testenv.Context(t, 2*time.Minute)
	e.replicate(t, "--stream", "CATALOGUE").streaming(t)
	e.start(t, "encode", "--http-addr=", "--stream", "CATALOGUE", "--batch-wait", "100ms")
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'S-1', 'Red wool scarf')`)
	testenv.WaitFor(t, "the vector", time.Minute, func() bool {
		var n int
		err := e.pool.QueryRow(ctx, "SELECT count(*) FROM product_embeddings WHERE NOT deleted").Scan(&n)
		return err == nil && n == 1
	})
	if _, err := js.Stream(ctx, event.Stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream PRODUCTS: %v, want it not to exist", err)
	}
	e.tail(ctx, t, "tail to print the change", "Red wool scarf", "--stream", "CATALOGUE", "--from-start")
}
