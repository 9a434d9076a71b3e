package testenv

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/catalog"
)

// Migrated opens a pool on url (closed when the test ends) with tidemark's schema migrated.
func Migrated(ctx context.Context, tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	pool := Pool(tb, url)
	if _, err := catalog.Migrate(ctx, pool); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return pool
}

// AddSupplier adds (or renames) supplier id and creates its partition, in a transaction of its
// own.
func AddSupplier(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, id int32, name string) {
	tb.Helper()
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return catalog.AddSupplier(ctx, tx, id, name) }); err != nil {
		tb.Fatalf("add supplier %d: %v", id, err)
	}
}

// Column runs a query of one column and returns its values, failing the test on an error.
func Column[T any](ctx context.Context, tb testing.TB, pool *pgxpool.Pool, sql string, args ...any) []T {
	tb.Helper()
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	values, err := pgx.CollectRows(rows, pgx.RowTo[T])
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return values
}
