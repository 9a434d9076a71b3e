package main

// How the demo knows the pipeline has caught up: the slot confirmed, the consumer drained and
// every vector that of its product's current text.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
)

// waitCaughtUp waits until the replicator has confirmed target, the encoders have acked every
// event, and the vector table matches the products table, or fails after --timeout.
func (d *demo) waitCaughtUp(ctx context.Context, target pglogrepl.LSN) error {
	d.log.Info("waiting for the vectors to catch up", "lsn", target)
	deadline := time.Now().Add(d.cmd.Timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		state, ok, err := d.caughtUpState(ctx, target)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the vectors did not catch up with the table within %s: %s", d.cmd.Timeout, state)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// caughtUpState says whether the pipeline has caught up, and if not, where it stands.
func (d *demo) caughtUpState(ctx context.Context, target pglogrepl.LSN) (string, bool, error) {
	if f := d.repl.Flushed(); f < target {
		return fmt.Sprintf("replicate has confirmed %s of %s", f, target), false, nil
	}
	cons, err := d.js.Consumer(ctx, event.Stream, d.ec.Consumer)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return "the encoders have not created their consumer yet", false, nil
		}
		return "", false, fmt.Errorf("consumer %s: %w", d.ec.Consumer, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return "", false, fmt.Errorf("consumer %s: %w", d.ec.Consumer, err)
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Sprintf("the encoders have %d events pending and %d unacknowledged", info.NumPending, info.NumAckPending), false, nil
	}
	stale, missing, err := d.compare(ctx)
	if err != nil {
		return "", false, err
	}
	if stale > 0 || missing > 0 {
		return fmt.Sprintf("%d live products lack a current vector, %d deleted ones are not tombstoned", stale, missing), false, nil
	}
	return "caught up", true, nil
}

// compare checks the vector table against products: stale counts live products without a
// vector of their current text, missing deleted products whose vector is not a tombstone.
func (d *demo) compare(ctx context.Context) (stale, missing int64, err error) {
	return compareVectors(ctx, d.pool, d.emb.Model())
}

// compareVectors counts the products whose vector of model is not the one of their current
// text (stale: missing, deleted or of an older text), and the live vectors whose product is
// gone (missing).
func compareVectors(ctx context.Context, pool *pgxpool.Pool, model string) (stale, missing int64, err error) {
	rows, err := pool.Query(ctx, `SELECT p.name, coalesce(p.description, ''), p.attributes::text,
			e.content_hash, coalesce(NOT e.deleted AND e.embedding IS NOT NULL, false)
		FROM products p
		LEFT JOIN product_embeddings e ON e.supplier_id = p.supplier_id AND e.product_id = p.id AND e.model = $1`, model)
	if err != nil {
		return 0, 0, fmt.Errorf("compare vectors: %w", err)
	}
	var (
		name, desc, attrs string
		hash              []byte
		live              bool
	)
	_, err = pgx.ForEachRow(rows, []any{&name, &desc, &attrs, &hash, &live}, func() error {
		if !live || string(hash) != string(encoder.ContentHash(model, encoder.Text(name, desc, json.RawMessage(attrs)))) {
			stale++
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("compare vectors: %w", err)
	}
	err = pool.QueryRow(ctx, `SELECT count(*) FROM product_embeddings e
		WHERE e.model = $1 AND NOT e.deleted
			AND NOT EXISTS (SELECT 1 FROM products p WHERE p.supplier_id = e.supplier_id AND p.id = e.product_id)`, model).Scan(&missing)
	if err != nil {
		return 0, 0, fmt.Errorf("compare vectors: %w", err)
	}
	return stale, missing, nil
}
