package loader

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidemark/tidemark/catalog"
)

// apply turns the staged rows into products: duplicates out, then one upsert that leaves rows
// equal to the drop untouched (no new row version, no WAL, no event). A direct load applies
// the rows it set aside with it.
func apply(ctx context.Context, tx pgx.Tx, log *slog.Logger, opts Options, res *Result) error {
	t := time.Now()
	phase := func(name string) {
		log.Debug("load phase", "phase", name, "elapsed", time.Since(t))
		t = time.Now()
	}
	// Whole-table joins only: the partition's statistics may say it is empty (it was just
	// created or truncated), and a nested loop over a table this load is filling is quadratic.
	if _, err := tx.Exec(ctx, "SET LOCAL enable_nestloop = off"); err != nil {
		return fmt.Errorf("set planner options: %w", err)
	}

	// Most drops hold no duplicate: the sku filter proved it while reading, else a hash
	// aggregate over the skus tells more cheaply than the self-join that removes them.
	distinct := res.valid
	if res.maybeDups {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT DISTINCT sku FROM `+stagingTable+` WHERE ok) d`).Scan(&distinct); err != nil {
			return fmt.Errorf("count distinct skus: %w", err)
		}
		phase("count distinct")
	}
	if distinct < res.valid {
		n, err := dropOverridden(ctx, tx, allChunks)
		if err != nil {
			return err
		}
		res.Duplicates = n
		phase("dedupe")
	}

	m, err := newMerger(ctx, tx, opts.Supplier)
	if err != nil {
		return err
	}
	ins, upd, err := m.merge(ctx, tx, allChunks)
	if err != nil {
		return err
	}
	res.Inserted, res.Updated = ins, upd
	phase("merge")
	res.Unchanged = res.valid - res.Duplicates - res.Inserted - res.Updated
	return nil
}

// allChunks selects every staged row, where a chunk number selects one chunk's.
const allChunks = -1

// chunkFilter is the SQL condition on the staging table's row s that selects a chunk.
func chunkFilter(chunk int32, s string) string {
	if chunk == allChunks {
		return "true"
	}
	return s + ".chunk = " + strconv.Itoa(int(chunk))
}

// dropOverridden deletes the staged rows of a chunk that a later row of the same sku
// overrides (the last one wins), and counts them.
func dropOverridden(ctx context.Context, tx pgx.Tx, chunk int32) (int64, error) {
	tag, err := tx.Exec(ctx, `DELETE FROM `+stagingTable+` s USING `+stagingTable+` l
		WHERE s.ok AND l.ok AND l.sku = s.sku AND l.line > s.line
		AND `+chunkFilter(chunk, "s")+` AND `+chunkFilter(chunk, "l"))
	if err != nil {
		return 0, fmt.Errorf("drop overridden duplicates: %w", err)
	}
	return tag.RowsAffected(), nil
}

// changedSQL holds when the staged row s differs from the product p. Attributes compare as
// text first (the loader wrote them as jsonb prints them), as jsonb only when the texts differ.
const changedSQL = `((p.name, p.description, p.price, p.currency, p.status)
	IS DISTINCT FROM
	(s.name, s.description, s.price::numeric(12,2), s.currency::bpchar, coalesce(nullif(s.status, ''), 'pending'))
	OR CASE WHEN p.attributes::text = s.attributes THEN false
	        ELSE p.attributes <> s.attributes::jsonb END)`

// merger applies staged rows to the partition with MERGE: rows whose values differ are
// updated, so an unchanged row gets no new version, no WAL, no event; new skus are inserted
// straight into the partition (no tuple routing).
type merger struct {
	supplier  int32
	partition string
	seq       string // the products id sequence
}

func newMerger(ctx context.Context, tx pgx.Tx, supplier int32) (*merger, error) {
	m := &merger{supplier: supplier, partition: pgx.Identifier{catalog.PartitionName(supplier)}.Sanitize()}
	// Before PostgreSQL 17 a partition does not inherit the identity default, so the id is
	// drawn from the parent's identity sequence, as the default would.
	if err := tx.QueryRow(ctx, "SELECT pg_get_serial_sequence('products', 'id')").Scan(&m.seq); err != nil {
		return nil, fmt.Errorf("find the products id sequence: %w", err)
	}
	return m, nil
}

// merge applies the staged rows of a chunk and reports how many rows it inserted and updated.
// The chunk is in the statement's text, so each plan is made for the planner settings of
// the moment, never reused from a cache.
func (m *merger) merge(ctx context.Context, tx pgx.Tx, chunk int32) (inserted, updated int64, err error) {
	// MERGE reports one total; this transaction's own statistics counters tell inserts from
	// updates, and no other session can move them.
	counts := `SELECT pg_stat_get_xact_tuples_inserted($1::regclass), pg_stat_get_xact_tuples_updated($1::regclass)`
	var ins0, upd0, ins1, upd1 int64
	if err := tx.QueryRow(ctx, counts, m.partition).Scan(&ins0, &upd0); err != nil {
		return 0, 0, fmt.Errorf("read row counters: %w", err)
	}
	if _, err := tx.Exec(ctx, `MERGE INTO `+m.partition+` AS p
		USING (SELECT * FROM `+stagingTable+` s WHERE s.ok AND `+chunkFilter(chunk, "s")+`) AS s
		ON p.supplier_id = $1 AND p.sku = s.sku
		WHEN MATCHED AND `+changedSQL+` THEN
			UPDATE SET name = s.name, description = s.description, price = s.price::numeric(12,2),
				currency = s.currency, status = coalesce(nullif(s.status, ''), 'pending'),
				attributes = s.attributes::jsonb, updated_at = now()
		WHEN NOT MATCHED THEN
			INSERT (id, supplier_id, sku, name, description, price, currency, status, attributes)
			OVERRIDING SYSTEM VALUE
			VALUES (nextval($2::regclass), $1, s.sku, s.name, s.description, s.price::numeric(12,2),
				s.currency, coalesce(nullif(s.status, ''), 'pending'), s.attributes::jsonb)`,
		pgx.QueryExecModeExec, m.supplier, m.seq); err != nil {
		return 0, 0, fmt.Errorf("merge into products: %w", err)
	}
	if err := tx.QueryRow(ctx, counts, m.partition).Scan(&ins1, &upd1); err != nil {
		return 0, 0, fmt.Errorf("read row counters: %w", err)
	}
	return ins1 - ins0, upd1 - upd0, nil
}
