package testenv

import (
	"context"
	"encoding/json"
	"strings"
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

// EmitMessageFunctions names this server's overloads of pg_logical_emit_message as GRANT and
// REVOKE take them: all of them, and those writing text (PostgreSQL 17 adds a flush argument
// to each), comma-separated.
func EmitMessageFunctions(ctx context.Context, tb testing.TB, pool *pgxpool.Pool) (all, text string) {
	tb.Helper()
	sigs := Column[string](ctx, tb, pool, `SELECT oid::regprocedure::text FROM pg_proc
		WHERE proname = 'pg_logical_emit_message' AND pronamespace = 'pg_catalog'::regnamespace ORDER BY 1`)
	var texts []string
	for _, s := range sigs {
		if strings.HasPrefix(s, "pg_logical_emit_message(boolean,text,text") {
			texts = append(texts, s)
		}
	}
	return strings.Join(sigs, ", "), strings.Join(texts, ", ")
}
