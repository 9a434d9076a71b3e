package loader

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// recordLoad writes what the load did to tidemark_loads, in the load's own transaction, so the
// record exists exactly when the load's changes do: `tidemark status` reads "the last load"
// from it. before is the supplier's product count when the load began (other writers wait for
// the load, so the count after it is exact).
func recordLoad(ctx context.Context, tx pgx.Tx, opts Options, res *Result, before int64) error {
	if _, err := tx.Exec(ctx, `INSERT INTO tidemark_loads
		(supplier_id, full_drop, inserted, updated, unchanged, deleted, rejected, duplicates, products)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		opts.Supplier, opts.Full, res.Inserted, res.Updated, res.Unchanged, res.Deleted, res.Rejected, res.Duplicates,
		before+res.Inserted-res.Deleted); err != nil {
		return fmt.Errorf("record the load: %w", err)
	}
	return nil
}
