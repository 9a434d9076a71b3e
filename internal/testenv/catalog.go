package testenv

import (
	"context"
	"fmt"
	neturl "net/url"
	"os"
	"sync/atomic"
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

// Role creates a login role of its own for the test, without privileges beyond PUBLIC's, and
// returns its name and pool's URL connecting as it. When the test ends, what the role owns is
// handed back to pool's user and its privileges are revoked, and the role is dropped: roles
// belong to the whole cluster, which the tests share.
func Role(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, prefix string) (name, url string) {
	tb.Helper()
	name = fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), roleSeq.Add(1))
	if _, err := pool.Exec(ctx, "CREATE ROLE "+name+" LOGIN"); err != nil {
		tb.Fatalf("create role %s: %v", name, err)
	}
	tb.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), fmt.Sprintf("REASSIGN OWNED BY %[1]s TO current_user; DROP OWNED BY %[1]s; DROP ROLE %[1]s", name))
	})
	u, err := neturl.Parse(pool.Config().ConnString())
	if err != nil {
		tb.Fatalf("role %s: %v", name, err)
	}
	u.User = neturl.User(name)
	return name, u.String()
}

var roleSeq atomic.Int64
