package catalog_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/internal/testenv"
)

// migrateBefore applies the migrations older than version, as an older tidemark did.
func migrateBefore(ctx context.Context, t *testing.T, pool *pgxpool.Pool, version string) {
	t.Helper()
	ms, err := catalog.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE tidemark_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version >= version {
			break
		}
		if _, err := pool.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Version, err)
		}
		if _, err := pool.Exec(ctx, "INSERT INTO tidemark_migrations (version) VALUES ($1)", m.Version); err != nil {
			t.Fatal(err)
		}
	}
}

// armedPartitions lists the products partitions that have catalog.TruncateTrigger, enabled
// always (also under session_replication_role = replica).
func armedPartitions(ctx context.Context, t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	return testenv.Column[string](ctx, t, pool, `SELECT c.relname FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
		JOIN pg_trigger g ON g.tgrelid = h.inhrelid AND g.tgname = $1 AND g.tgenabled = 'A'
		WHERE h.inhparent = 'products'::regclass ORDER BY 1`, catalog.TruncateTrigger)
}

// TestTruncateTriggers: the partitions of a database migrated before 0008 (one made by
// supplier add, which could not arm it yet, one by hand) get the truncate trigger from the
// migration, and a partition made after it gets it from supplier add.
func TestTruncateTriggers(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	pool := testenv.Pool(t, testenv.Database(t))
	migrateBefore(ctx, t, pool, "0008")
	testenv.AddSupplier(ctx, t, pool, 1, "before")
	if _, err := pool.Exec(ctx, "CREATE TABLE products_s2 PARTITION OF products FOR VALUES IN (2)"); err != nil {
		t.Fatal(err)
	}
	if got := armedPartitions(ctx, t, pool); len(got) != 0 {
		t.Fatalf("armed before 0008: %v", got)
	}
	if _, err := catalog.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if got, want := armedPartitions(ctx, t, pool), []string{"products_s1", "products_s2"}; !slices.Equal(got, want) {
		t.Fatalf("armed after migrate: %v, want %v", got, want)
	}
	testenv.AddSupplier(ctx, t, pool, 3, "after")
	testenv.AddSupplier(ctx, t, pool, 3, "again") // idempotent
	all := []string{"products_s1", "products_s2", "products_s3"}
	if got := armedPartitions(ctx, t, pool); !slices.Equal(got, all) {
		t.Fatalf("armed after supplier add: %v, want %v", got, all)
	}
	// A disabled trigger does not count, and supplier add enables it again.
	if _, err := pool.Exec(ctx, "ALTER TABLE products_s2 DISABLE TRIGGER "+catalog.TruncateTrigger); err != nil {
		t.Fatal(err)
	}
	if got := armedPartitions(ctx, t, pool); slices.Contains(got, "products_s2") {
		t.Fatalf("a disabled trigger counts as armed: %v", got)
	}
	testenv.AddSupplier(ctx, t, pool, 2, "")
	if got := armedPartitions(ctx, t, pool); !slices.Equal(got, all) {
		t.Fatalf("armed after supplier add of a disabled one: %v, want %v", got, all)
	}

	// A role that may not create triggers on a partition made by hand still adds its
	// supplier: the partition goes without the trigger (doctor says so) instead of the load
	// failing.
	role, roleURL := testenv.Role(ctx, t, pool, "catalog_plain")
	if _, err := pool.Exec(ctx, fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE ON suppliers TO %s;
		CREATE TABLE products_s4 PARTITION OF products FOR VALUES IN (4)`, role)); err != nil {
		t.Fatal(err)
	}
	testenv.AddSupplier(ctx, t, testenv.Pool(t, roleURL), 4, "plain")
	if got := armedPartitions(ctx, t, pool); !slices.Equal(got, all) {
		t.Fatalf("armed after a plain role's supplier add: %v, want %v", got, all)
	}
}

// TestTruncateTriggerMigrationGivesUpBehindALoad: migration 0008 locks each partition to give
// it its trigger. Behind a transaction writing a partition (a load) it fails after its lock
// timeout instead of queueing every writer of products behind it, and applies once the
// writer is done.
func TestTruncateTriggerMigrationGivesUpBehindALoad(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	pool := testenv.Pool(t, testenv.Database(t))
	migrateBefore(ctx, t, pool, "0008")
	testenv.AddSupplier(ctx, t, pool, 1, "loading")
	load, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = load.Rollback(context.Background()) }()
	if _, err := load.Exec(ctx, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'L-1', 'n')`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = catalog.Migrate(ctx, pool)
	if err == nil || !strings.Contains(err.Error(), "0008_partition_truncates.sql") || !strings.Contains(err.Error(), "lock timeout") {
		t.Fatalf("migrate behind a load: %v, want 0008 to fail on its lock timeout", err)
	}
	if waited := time.Since(start); waited > time.Minute {
		t.Fatalf("migrate waited %s behind the load", waited)
	}
	if err := load.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := catalog.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate after the load: %v", err)
	}
	if got := armedPartitions(ctx, t, pool); !slices.Equal(got, []string{"products_s1"}) {
		t.Fatalf("armed: %v", got)
	}
}
