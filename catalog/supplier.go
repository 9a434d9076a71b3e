package catalog

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Supplier is a row of suppliers, with its partition when it has one.
type Supplier struct {
	ID        int32     `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Partition string    `json:"partition,omitempty"`
	Products  int64     `json:"products"`
}

// PartitionPrefix and a supplier's ID name the supplier's partition of products.
const PartitionPrefix = "products_s"

// PartitionName is the name of supplier id's products partition.
func PartitionName(id int32) string { return PartitionPrefix + strconv.FormatInt(int64(id), 10) }

// PartitionSupplier is the supplier whose products partition table is, the inverse of
// [PartitionName]; ok is false when table is not one.
func PartitionSupplier(table string) (id int32, ok bool) {
	rest, ok := strings.CutPrefix(table, PartitionPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(rest, 10, 32)
	if err != nil || n <= 0 {
		return 0, false
	}
	return int32(n), true
}

// partitionLockKey serialises partition creation per supplier: CREATE TABLE IF NOT EXISTS
// alone races (two sessions both see it missing and one fails on pg_type's unique index).
func partitionLockKey(id int32) int64 { return 0x7464_0000_0000_0000 | int64(uint32(id)) }

// AddSupplier upserts supplier id (keeping its name when name is empty) and creates its
// products partition when missing. It is idempotent.
func AddSupplier(ctx context.Context, db pgx.Tx, id int32, name string) error {
	if id <= 0 {
		return fmt.Errorf("supplier %d: %w", id, ErrBadSupplierID)
	}
	if _, err := db.Exec(ctx, `INSERT INTO suppliers (id, name) VALUES ($1, $2)
		ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name
		WHERE EXCLUDED.name <> '' AND suppliers.name IS DISTINCT FROM EXCLUDED.name`, id, name); err != nil {
		return fmt.Errorf("upsert supplier %d: %w", id, err)
	}
	return EnsurePartition(ctx, db, id)
}

// TruncateTrigger is the trigger on each supplier partition that makes a TRUNCATE of the
// partition alone reach the stream (see sql/0008_partition_truncates.sql): PostgreSQL does not
// publish it through the partition root.
const TruncateTrigger = "tidemark_truncate"

// EnsurePartition creates supplier id's products partition when it does not exist, and gives
// it its [TruncateTrigger] when it lacks one (a partition created by hand), provided the
// schema is migrated far enough to have the trigger's function and the role may create
// triggers on the partition; otherwise the partition goes without, and doctor says so.
func EnsurePartition(ctx context.Context, db pgx.Tx, id int32) error {
	if _, err := db.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLockKey(id)); err != nil {
		return fmt.Errorf("lock partition of supplier %d: %w", id, err)
	}
	name := pgx.Identifier{PartitionName(id)}.Sanitize()
	exists, armed, armable, err := partitionState(ctx, db, id)
	if err != nil {
		return err
	}
	if !exists {
		stmt := fmt.Sprintf("CREATE TABLE %s PARTITION OF products FOR VALUES IN (%d)", name, id)
		if _, err := db.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create partition of supplier %d: %w", id, err)
		}
		// Again: the CREATE may have waited for migration 0008, which brought the function.
		if _, armed, armable, err = partitionState(ctx, db, id); err != nil {
			return err
		}
	}
	if armed || !armable {
		return nil
	}
	stmt := fmt.Sprintf(`DROP TRIGGER IF EXISTS %[1]s ON %[2]s;
		CREATE TRIGGER %[1]s BEFORE TRUNCATE ON %[2]s FOR EACH STATEMENT EXECUTE FUNCTION tidemark_truncate_partition();
		ALTER TABLE %[2]s ENABLE ALWAYS TRIGGER %[1]s`, TruncateTrigger, name)
	if _, err := db.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("create the truncate trigger of supplier %d's partition: %w", id, err)
	}
	return nil
}

// partitionState reads whether supplier id's partition exists, whether it has its
// [TruncateTrigger] enabled always, and whether this role can give it one.
func partitionState(ctx context.Context, db pgx.Tx, id int32) (exists, armed, armable bool, err error) {
	err = db.QueryRow(ctx, `SELECT p IS NOT NULL,
			EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = p AND tgname = $2 AND tgenabled = 'A'),
			to_regproc('tidemark_truncate_partition') IS NOT NULL AND coalesce(has_table_privilege(p, 'TRIGGER'), true)
		FROM to_regclass($1) p`, PartitionName(id), TruncateTrigger).Scan(&exists, &armed, &armable)
	if err != nil {
		return false, false, false, fmt.Errorf("look up partition of supplier %d: %w", id, err)
	}
	return exists, armed, armable, nil
}

// ListSuppliers returns every supplier with its partition and product count, by id.
func ListSuppliers(ctx context.Context, db pgx.Tx) ([]Supplier, error) {
	rows, err := db.Query(ctx, `
		SELECT s.id, s.name, s.created_at, coalesce(c.relname, ''),
		       coalesce((SELECT count(*) FROM products p WHERE p.supplier_id = s.id), 0)
		FROM suppliers s
		LEFT JOIN pg_class c ON c.oid = to_regclass('products_s' || s.id)
		ORDER BY s.id`)
	if err != nil {
		return nil, fmt.Errorf("list suppliers: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Supplier, error) {
		var s Supplier
		err := r.Scan(&s.ID, &s.Name, &s.CreatedAt, &s.Partition, &s.Products)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("list suppliers: %w", err)
	}
	return list, nil
}

// SetDropProfile stores the drop profile of supplier id (YAML, already checked by the caller);
// an empty profile clears it. The supplier must exist.
func SetDropProfile(ctx context.Context, db pgx.Tx, id int32, profile string) error {
	var p *string
	if profile != "" {
		p = &profile
	}
	tag, err := db.Exec(ctx, `UPDATE suppliers SET drop_profile = $2,
		drop_profile_updated_at = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END WHERE id = $1`, id, p)
	if err != nil {
		return fmt.Errorf("set drop profile of supplier %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("supplier %d: %w (tidemark supplier add %d first)", id, ErrNoSupplier, id)
	}
	return nil
}

// DropProfile returns the stored drop profile of supplier id, and false when it has none. A
// supplier that does not exist has none.
func DropProfile(ctx context.Context, db Querier, id int32) (string, bool, error) {
	var p *string
	err := db.QueryRow(ctx, "SELECT drop_profile FROM suppliers WHERE id = $1", id).Scan(&p)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("read drop profile of supplier %d: %w", id, err)
	case p == nil:
		return "", false, nil
	}
	return *p, true, nil
}

// Querier is what reading a supplier needs: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
