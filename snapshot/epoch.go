package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/replication"
)

// A snapshot of a supplier is one epoch in the stream: an open message written before the
// first chunk and a close written with the snapshot's finish, in one transaction, so that a
// snapshot killed at any point leaves an epoch without its close, which subscribers ignore.
//
// The open's LSN is what the close carries, and subscribers drop the supplier's products
// whose newest event is older than it. That is sound only if every product that exists and
// has no event after the open is read by a chunk: so the open is written first, then the
// snapshot waits for the transactions running at that moment (one that committed just before
// the open may not be visible yet), and only then reads until_id, the highest id it will read.
// Any product committed before the open then has an id at most until_id, and one inserted
// after the open has its insert event after it.
//
// A resumed snapshot keeps its epoch: the rows its earlier run read are in the stream after
// the open, and every change since has its event, so nothing the close drops is alive. That
// stops holding when changes were lost meanwhile (a lost slot): then Options.NewEpoch.

// openEpoch writes the epoch's open message, waits until everything committed before it is
// visible, and records the epoch with a fresh until_id, from which the snapshot starts over.
func openEpoch(ctx context.Context, pool *pgxpool.Pool, opts Options, snapID string, supplier int32) (epochID string, untilID int64, err error) {
	epochID = fmt.Sprintf("%s.%d", snapID, time.Now().UnixNano())
	content, err := json.Marshal(replication.EpochMessage{ID: epochID, Supplier: int64(supplier), Schema: "public", Table: "products"})
	if err != nil {
		return "", 0, err
	}
	var openLSN string
	// Transactional, so that it has a place in commit order; alone in its transaction.
	if err := pool.QueryRow(ctx, "SELECT pg_logical_emit_message(true, $1, $2::text)::text",
		replication.EpochOpenPrefix, string(content)).Scan(&openLSN); err != nil {
		return "", 0, fmt.Errorf("write the epoch's open: %w", err)
	}
	if err := waitForInProgress(ctx, pool, opts.Log, opts.MaxWait); err != nil {
		return "", 0, err
	}
	err = pool.QueryRow(ctx, `UPDATE tidemark_snapshots SET epoch_id = $2, open_lsn = $3::pg_lsn,
			until_id = (SELECT coalesce(max(id), 0) FROM products WHERE supplier_id = $4),
			last_id = 0, chunks = 0, rows = 0
		WHERE id = $1 AND finished_at IS NULL RETURNING until_id`, snapID, epochID, openLSN, supplier).Scan(&untilID)
	if err != nil {
		return "", 0, fmt.Errorf("record epoch %s: %w", epochID, err)
	}
	opts.Log.Info("snapshot epoch opened", "epoch", epochID, "supplier", supplier, "open_lsn", openLSN, "until_id", untilID)
	return epochID, untilID, nil
}

// closeEpoch writes the epoch's close and marks the snapshot finished, in one transaction.
func closeEpoch(ctx context.Context, pool *pgxpool.Pool, snapID, epochID string, openLSN string, supplier int32, rows int64) error {
	content, err := json.Marshal(replication.EpochMessage{ID: epochID, Supplier: int64(supplier), Schema: "public", Table: "products",
		OpenLSN: openLSN, Rows: rows})
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::text)", replication.EpochClosePrefix, string(content)); err != nil {
			return fmt.Errorf("write the epoch's close: %w", err)
		}
		_, err := tx.Exec(ctx, "UPDATE tidemark_snapshots SET finished_at = now() WHERE id = $1", snapID)
		return err
	})
	if err != nil {
		return fmt.Errorf("finish snapshot %s: %w", snapID, err)
	}
	return nil
}

// AbandonEpochs forgets the epochs of every unfinished snapshot, so that each one's next run
// opens a new epoch and reads its supplier from the start, as Options.NewEpoch does for one.
// Call it once changes may have been lost (a replication slot re-created), before any snapshot
// resumes: an epoch opened before the loss would keep products deleted during it. It returns
// how many it abandoned; their opens stay in the stream without a close, which means nothing.
func AbandonEpochs(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	tag, err := pool.Exec(ctx, `UPDATE tidemark_snapshots SET epoch_id = NULL, open_lsn = NULL
		WHERE finished_at IS NULL AND epoch_id IS NOT NULL`)
	if err != nil {
		return 0, fmt.Errorf("abandon unfinished snapshot epochs: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Resnapshot is a finished snapshot of a supplier whose epoch opened after a given LSN.
type Resnapshot struct {
	Epoch    string    `json:"epoch"`
	Finished time.Time `json:"finished"`
}

// FinishedSince returns the first snapshot of supplier that opened its epoch after lsn and
// finished: after a snapshot epoch lost a chunk at lsn, such a snapshot has carried every
// product of the supplier again, which repairs what the lost epoch would have. ok is false
// when there is none, and on a database that records no snapshots yet.
func FinishedSince(ctx context.Context, pool *pgxpool.Pool, supplier int64, lsn event.LSN) (r Resnapshot, ok bool, err error) {
	err = pool.QueryRow(ctx, `SELECT epoch_id, finished_at FROM tidemark_snapshots
		WHERE supplier_id = $1 AND finished_at IS NOT NULL AND open_lsn > $2::pg_lsn
		ORDER BY open_lsn LIMIT 1`, supplier, lsn.String()).Scan(&r.Epoch, &r.Finished)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table: not migrated
		return Resnapshot{}, false, nil
	case err != nil:
		return Resnapshot{}, false, fmt.Errorf("snapshots of supplier %d since %s: %w", supplier, lsn, err)
	}
	return r, true, nil
}
