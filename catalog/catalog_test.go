package catalog_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	pool := testenv.Pool(t, testenv.Database(t))

	pending, err := catalog.Pending(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) == 0 {
		t.Fatal("fresh database: want pending migrations")
	}
	var wg sync.WaitGroup
	applied := make([][]string, 3)
	errs := make([]error, 3)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = catalog.Migrate(ctx, pool)
		}()
	}
	wg.Wait()
	total := 0
	for i := range applied {
		if errs[i] != nil {
			t.Fatalf("migrate %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	if total != len(pending) {
		t.Fatalf("three concurrent runs applied %d migrations, want %d once each", total, len(pending))
	}
	again, err := catalog.Migrate(ctx, pool)
	if err != nil || len(again) != 0 {
		t.Fatalf("second run applied %v, err %v; want nothing", again, err)
	}
	if p, _ := catalog.Pending(ctx, pool); len(p) != 0 {
		t.Fatalf("pending after migrate: %v", p)
	}
}

func TestAddSupplier(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	pool := testenv.Migrated(ctx, t, testenv.Database(t))
	add := func(id int32, name string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return catalog.AddSupplier(ctx, tx, id, name) })
	}
	if err := add(0, "zero"); !errors.Is(err, catalog.ErrBadSupplierID) {
		t.Fatalf("supplier 0: got %v, want ErrBadSupplierID", err)
	}
	// Concurrent adds of one supplier must not race on the partition.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- add(42, "Acme") }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := add(42, ""); err != nil { // an empty name keeps the old one
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO products (supplier_id, sku, name) VALUES (42, 'a', 'A')"); err != nil {
		t.Fatalf("insert into the new partition: %v", err)
	}
	var list []catalog.Supplier
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		list, err = catalog.ListSuppliers(ctx, tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != 42 || list[0].Name != "Acme" || list[0].Partition != "products_s42" || list[0].Products != 1 {
		t.Fatalf("list = %+v", list)
	}
	if _, err := pool.Exec(context.Background(), "INSERT INTO products (supplier_id, sku, name) VALUES (7, 'a', 'A')"); err == nil {
		t.Fatal("insert for a supplier without a partition succeeded; want an error (no DEFAULT partition)")
	}
}

func TestDropProfile(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	pool := testenv.Migrated(ctx, t, testenv.Database(t))
	set := func(id int32, p string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return catalog.SetDropProfile(ctx, tx, id, p) })
	}
	if err := set(9, "delimiter: ';'\n"); !errors.Is(err, catalog.ErrNoSupplier) {
		t.Fatalf("profile of a missing supplier: %v", err)
	}
	testenv.AddSupplier(ctx, t, pool, 9, "Dutch")
	if _, ok, err := catalog.DropProfile(ctx, pool, 9); ok || err != nil {
		t.Fatalf("new supplier has a profile: %v, %v", ok, err)
	}
	const p = "# kept as written\ndelimiter: ';'\n"
	if err := set(9, p); err != nil {
		t.Fatal(err)
	}
	// Adding the supplier again (a rename) keeps its profile.
	testenv.AddSupplier(ctx, t, pool, 9, "Dutch BV")
	if got, ok, err := catalog.DropProfile(ctx, pool, 9); got != p || !ok || err != nil {
		t.Fatalf("profile %q, %v, %v; want %q", got, ok, err, p)
	}
	if err := set(9, ""); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := catalog.DropProfile(ctx, pool, 9); ok || err != nil {
		t.Fatalf("cleared profile still there: %v, %v", ok, err)
	}
}
