package loader

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tidemark/tidemark/catalog"
)

// apply turns the staged rows into products: duplicates out, the --full deletes, then one
// upsert that leaves rows equal to the drop untouched (no new row version, no WAL, no event).
func apply(ctx context.Context, tx pgx.Tx, log *slog.Logger, opts Options, stored *storedRows, res *Result) error {
	t := time.Now()
	phase := func(name string) {
		log.Debug("load phase", "phase", name, "elapsed", time.Since(t))
		t = time.Now()
	}
	partition := pgx.Identifier{catalog.PartitionName(opts.Supplier)}.Sanitize()

	// Whole-table joins only: the partition's statistics may say it is empty (it was just
	// created or truncated), and a nested loop over a table this load is filling is quadratic.
	if _, err := tx.Exec(ctx, "SET LOCAL enable_nestloop = off"); err != nil {
		return fmt.Errorf("set planner options: %w", err)
	}

	// Most drops hold no duplicate: the sku filter proved it while reading, else a hash
	// aggregate over the skus tells more cheaply than the self-join that removes them.
	staged := res.valid - res.skipped
	distinct := staged
	if res.maybeDups {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT DISTINCT sku FROM `+stagingTable+` WHERE ok) d`).Scan(&distinct); err != nil {
			return fmt.Errorf("count distinct skus: %w", err)
		}
		phase("count distinct")
	}
	if distinct < staged {
		tag, err := tx.Exec(ctx, `DELETE FROM `+stagingTable+` s USING `+stagingTable+` l
			WHERE s.ok AND l.ok AND l.sku = s.sku AND l.line > s.line`)
		if err != nil {
			return fmt.Errorf("drop overridden duplicates: %w", err)
		}
		res.Duplicates += tag.RowsAffected()
		phase("dedupe")
	}

	if opts.Full {
		// A product stays when a record matched it (the stored rows know) or names it in
		// the staging table (changed, or rejected but naming its sku).
		var total int64
		var tag pgconn.CommandTag
		var err error
		if stored != nil {
			total = int64(stored.n)
			tag, err = tx.Exec(ctx, `DELETE FROM `+partition+` p
				WHERE p.supplier_id = $1 AND p.id = ANY($2)
				AND NOT EXISTS (SELECT 1 FROM `+stagingTable+` s WHERE s.sku = p.sku)`, opts.Supplier, stored.unmatched())
		} else {
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+partition).Scan(&total); err != nil {
				return fmt.Errorf("count products: %w", err)
			}
			tag, err = tx.Exec(ctx, `DELETE FROM `+partition+` p
				WHERE NOT EXISTS (SELECT 1 FROM `+stagingTable+` s WHERE s.sku = p.sku)`)
		}
		if err != nil {
			return fmt.Errorf("delete products absent from the drop: %w", err)
		}
		res.Deleted = tag.RowsAffected()
		if !opts.Force && res.Deleted*2 > total {
			return fmt.Errorf("%w: %d of %d absent from the drop (use --force if that is meant)",
				ErrFullWouldDeleteTooMuch, res.Deleted, total)
		}
		phase("full delete")
	}

	// One MERGE: a hash join of the staging table with the partition (carrying only sku and
	// row position), updating only rows whose values differ, so an unchanged row gets no new
	// version, no WAL, no event. Attributes compare as text first (the loader wrote them as
	// jsonb prints them), as jsonb only when the texts differ. It also inserts the new skus straight into the partition (no
	// tuple routing). Before PostgreSQL 17 a partition does not inherit the identity default,
	// so the id is drawn from the parent's identity sequence, as the default would.
	var seq string
	if err := tx.QueryRow(ctx, "SELECT pg_get_serial_sequence('products', 'id')").Scan(&seq); err != nil {
		return fmt.Errorf("find the products id sequence: %w", err)
	}
	// MERGE reports one total; this transaction's own statistics counters tell inserts from
	// updates, and no other session can move them.
	counts := `SELECT pg_stat_get_xact_tuples_inserted($1::regclass), pg_stat_get_xact_tuples_updated($1::regclass)`
	var ins0, upd0, ins1, upd1 int64
	if err := tx.QueryRow(ctx, counts, partition).Scan(&ins0, &upd0); err != nil {
		return fmt.Errorf("read row counters: %w", err)
	}
	if _, err := tx.Exec(ctx, `MERGE INTO `+partition+` AS p
		USING (SELECT * FROM `+stagingTable+` WHERE ok) AS s
		ON p.supplier_id = $1 AND p.sku = s.sku
		WHEN MATCHED AND ((p.name, p.description, p.price, p.currency, p.status)
			IS DISTINCT FROM
			(s.name, s.description, s.price::numeric(12,2), s.currency::bpchar, coalesce(nullif(s.status, ''), 'pending'))
			OR CASE WHEN p.attributes::text = s.attributes THEN false
			        ELSE p.attributes <> s.attributes::jsonb END) THEN
			UPDATE SET name = s.name, description = s.description, price = s.price::numeric(12,2),
				currency = s.currency, status = coalesce(nullif(s.status, ''), 'pending'),
				attributes = s.attributes::jsonb, updated_at = now()
		WHEN NOT MATCHED THEN
			INSERT (id, supplier_id, sku, name, description, price, currency, status, attributes)
			OVERRIDING SYSTEM VALUE
			VALUES (nextval($2::regclass), $1, s.sku, s.name, s.description, s.price::numeric(12,2),
				s.currency, coalesce(nullif(s.status, ''), 'pending'), s.attributes::jsonb)`,
		opts.Supplier, seq); err != nil {
		return fmt.Errorf("merge into products: %w", err)
	}
	if err := tx.QueryRow(ctx, counts, partition).Scan(&ins1, &upd1); err != nil {
		return fmt.Errorf("read row counters: %w", err)
	}
	res.Inserted, res.Updated = ins1-ins0, upd1-upd0
	phase("merge")
	res.Unchanged = res.valid - res.Duplicates - res.Inserted - res.Updated
	return nil
}
