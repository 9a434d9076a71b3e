package testenv

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EmitMessage writes content as JSON in a transactional logical message with prefix, as
// package snapshot writes its epochs and chunks, and returns the message's LSN.
func EmitMessage(tb testing.TB, pool *pgxpool.Pool, prefix string, content any) pglogrepl.LSN {
	tb.Helper()
	b, err := json.Marshal(content)
	if err != nil {
		tb.Fatal(err)
	}
	var s string
	if err := pool.QueryRow(Context(tb, time.Minute), "SELECT pg_logical_emit_message(true, $1, $2::text)::text", prefix, string(b)).Scan(&s); err != nil {
		tb.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		tb.Fatal(err)
	}
	return lsn
}
