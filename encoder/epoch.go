package encoder

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/tidemark/tidemark/event"
)

// A snapshot epoch's close tombstones the vectors of its supplier that no event has written
// or confirmed since the epoch's open: their products were gone when the snapshot read the
// supplier, and their deletes never reached the stream (a lost slot). Every product that
// still exists had an event after the open — its snapshot row, or a live insert or update
// while the snapshot ran, which is newer than the snapshot's view of it — so a vector with a
// source position before the open is stale. A product deleted during the epoch has its own
// tombstone already.
//
// The tombstone takes the open's position, not the close's: events of the epoch that another
// worker or a later batch writes after this close (they all come after the open) still apply
// over it, while an older event replayed later does not resurrect the product. An epoch whose
// close never comes (the snapshot died) changes nothing.

// closeEpoch tombstones, in tx, the live vectors of model for ep's supplier whose source
// position is before ep's open, and returns how many.
func (s *Store) closeEpoch(ctx context.Context, tx pgx.Tx, model string, ep *event.Epoch) (int64, error) {
	tag, err := tx.Exec(ctx, `UPDATE product_embeddings SET deleted = true, embedding = NULL, dim = NULL,
			content_hash = NULL, source_lsn = $3::text::pg_lsn, source_seq = 0, updated_at = now()
		WHERE model = $1 AND supplier_id = $2 AND NOT deleted AND source_lsn < $3::text::pg_lsn`,
		model, int32(ep.SupplierID), ep.OpenLSN.String())
	if err != nil {
		return 0, fmt.Errorf("tombstone vectors the snapshot epoch %s did not carry: %w", ep.ID, err)
	}
	return tag.RowsAffected(), nil
}

// applyEpochs applies the epoch events of a batch in tx: closes tombstone, opens need nothing
// (an epoch counts from its open's position, which its close carries).
func (e *Encoder) applyEpochs(ctx context.Context, tx pgx.Tx, evs []*received) error {
	for _, ev := range evs {
		if ev.ch.Op != event.OpEpochClose {
			continue
		}
		ep := ev.ch.Epoch
		n, err := e.store.closeEpoch(ctx, tx, e.model, ep)
		if err != nil {
			return err
		}
		e.log.Info("snapshot epoch closed: tombstoned the vectors it did not carry", "epoch", ep.ID,
			"supplier", ep.SupplierID, "vectors", n, "open_lsn", ep.OpenLSN, "rows", ep.Rows)
	}
	return nil
}
