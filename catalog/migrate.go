package catalog

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	tmsql "github.com/tidemark/tidemark/sql"
)

// migrateLockKey is the advisory lock that serialises concurrent `tidemark migrate` runs.
const migrateLockKey = 0x7469_6465_6d61_7201 // "tidemar" + 1

// Migration is one embedded migration file.
type Migration struct {
	Version string // the file name, e.g. 0001_products.sql
	SQL     string
}

// Migrations lists the embedded migrations in the order they apply.
func Migrations() ([]Migration, error) {
	names, err := fs.Glob(tmsql.Migrations, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	for _, name := range names {
		b, err := fs.ReadFile(tmsql.Migrations, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		out = append(out, Migration{Version: name, SQL: string(b)})
	}
	return out, nil
}

// Migrate applies every embedded migration not yet recorded in tidemark_migrations, in order,
// each in its own transaction, under an advisory lock so concurrent runs serialise. It returns
// the versions it applied (none when the schema is current). Then it puts product_embeddings
// in the vector layout asked for ([WithVectors], else the tidemark.vectors setting; by default
// the layout stays as it is).
func Migrate(ctx context.Context, pool *pgxpool.Pool, opts ...Option) ([]string, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	migrations, err := Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLockKey)); err != nil {
		return nil, fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		// A fresh context: the caller's may be cancelled, and the lock must not outlive us on a
		// pooled connection.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrateLockKey))
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS tidemark_migrations (
		version    text PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("create tidemark_migrations: %w", err)
	}
	applied, err := appliedMigrations(ctx, conn)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, m := range migrations {
		if applied[m.Version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO tidemark_migrations (version) VALUES ($1)", m.Version)
			return err
		})
		if err != nil {
			return done, fmt.Errorf("apply migration %s: %w", m.Version, err)
		}
		done = append(done, m.Version)
	}
	if err := setVectors(ctx, conn.Conn(), o); err != nil {
		return done, err
	}
	return done, nil
}

// Pending returns the embedded migrations not yet applied (all of them on a fresh database).
func Pending(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	migrations, err := Migrations()
	if err != nil {
		return nil, err
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('tidemark_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("look for tidemark_migrations: %w", err)
	}
	applied := map[string]bool{}
	if exists {
		if applied, err = appliedMigrations(ctx, pool); err != nil {
			return nil, err
		}
	}
	var pending []string
	for _, m := range migrations {
		if !applied[m.Version] {
			pending = append(pending, strings.TrimSuffix(m.Version, ".sql"))
		}
	}
	return pending, nil
}

// appliedMigrations reads the versions tidemark_migrations records as applied.
func appliedMigrations(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}) (map[string]bool, error) {
	rows, err := q.Query(ctx, "SELECT version FROM tidemark_migrations")
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	applied := make(map[string]bool, len(versions))
	for _, v := range versions {
		applied[v] = true
	}
	return applied, nil
}
