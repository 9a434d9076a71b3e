package main

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// insertLSN is the end of the WAL written so far: where the last transaction's records end.
func insertLSN(ctx context.Context, db rowQuerier) (pglogrepl.LSN, error) {
	return queryLSN(ctx, db, "SELECT pg_current_wal_insert_lsn()::text")
}

// flushLSN is the end of the WAL flushed to disk, all that a slot can see.
func flushLSN(ctx context.Context, db rowQuerier) (pglogrepl.LSN, error) {
	return queryLSN(ctx, db, "SELECT pg_current_wal_flush_lsn()::text")
}

// rowQuerier is a pool or a connection.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func queryLSN(ctx context.Context, db rowQuerier, query string) (pglogrepl.LSN, error) {
	var s string
	if err := db.QueryRow(ctx, query).Scan(&s); err != nil {
		return 0, fmt.Errorf("%s: %w", query, err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", query, err)
	}
	return lsn, nil
}
