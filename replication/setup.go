package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what setup and checkpoints need from a normal (non-replication) connection:
// *pgx.Conn, *pgxpool.Pool and pgx.Tx all fit.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CheckWALLevel reads the server's wal_level and returns it, with ErrWALLevel (naming the
// setting and the fix) unless it is logical. Replicate and doctor both ask it.
func CheckWALLevel(ctx context.Context, db Querier) (string, error) {
	var level string
	if err := db.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return "", fmt.Errorf("read wal_level: %w", err)
	}
	if level != "logical" {
		return level, fmt.Errorf("%w: the server has wal_level=%s; set wal_level = logical in postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL", ErrWALLevel, level)
	}
	return level, nil
}

// EnsurePublication creates publication name for tables (with publish_via_partition_root,
// so partitions publish under their root) or, when it exists, sets its table list. It is
// idempotent.
func EnsurePublication(ctx context.Context, db Querier, name string, tables []string) error {
	if len(tables) == 0 {
		return errors.New("publication needs at least one table")
	}
	idents := make([]string, len(tables))
	for i, t := range tables {
		idents[i] = pgx.Identifier(strings.Split(t, ".")).Sanitize()
	}
	list := strings.Join(idents, ", ")
	ident := pgx.Identifier{name}.Sanitize()
	var exists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up publication %s: %w", name, err)
	}
	if !exists {
		_, err := db.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish_via_partition_root = true)", ident, list))
		var pgErr *pgconn.PgError
		if err == nil || (errors.As(err, &pgErr) && pgErr.Code == "42710") {
			return nil
		}
		return fmt.Errorf("create publication %s: %w", name, err)
	}
	if _, err := db.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s SET TABLE %s", ident, list)); err != nil {
		return fmt.Errorf("set tables of publication %s: %w", name, err)
	}
	if _, err := db.Exec(ctx, fmt.Sprintf("ALTER PUBLICATION %s SET (publish_via_partition_root = true)", ident)); err != nil {
		return fmt.Errorf("alter publication %s: %w", name, err)
	}
	return nil
}

// EnsureSlot creates logical slot name with pgoutput (a failover slot on PostgreSQL 17+); an
// existing slot (42710) is kept.
// It reports whether it created the slot.
func EnsureSlot(ctx context.Context, db Querier, name string) (bool, error) {
	err := createSlot(ctx, db, name)
	if err == nil {
		return true, nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42710" {
		return false, fmt.Errorf("create replication slot %s: %w", name, err)
	}
	// Slot names are cluster-wide: one of this name may belong to another database or
	// plugin, and streaming from it would fail on every retry.
	var plugin, database string
	var ours bool
	err = db.QueryRow(ctx, `SELECT coalesce(plugin, ''), coalesce(database, ''), coalesce(database = current_database(), false)
		FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&plugin, &database, &ours)
	if err != nil {
		return false, fmt.Errorf("inspect replication slot %s: %w", name, err)
	}
	if !ours || plugin != "pgoutput" {
		return false, fmt.Errorf("replication slot %s exists for database %q with plugin %q: %w (choose another --slot, or drop it)",
			name, database, plugin, ErrSlotNotOurs)
	}
	return false, nil
}

// AdvanceSlot moves a slot that no replicator is using forward to lsn with
// pg_replication_slot_advance. Moving it behind its confirmed LSN returns ErrBackward.
func AdvanceSlot(ctx context.Context, db Querier, name string, lsn pglogrepl.LSN) (pglogrepl.LSN, error) {
	s, err := ReadSlot(ctx, db, name)
	if err != nil {
		return 0, err
	}
	if lsn < s.ConfirmedLSN {
		return 0, fmt.Errorf("%w: slot %s is confirmed up to %s, and %s is before it (the WAL in between is gone)", ErrBackward, name, s.ConfirmedLSN, lsn)
	}
	if s.Active {
		return 0, fmt.Errorf("slot %s is in use by PID %d: stop the replicator first", name, s.ActivePID)
	}
	var end string
	if err := db.QueryRow(ctx, "SELECT end_lsn::text FROM pg_replication_slot_advance($1, $2::pg_lsn)", name, lsn.String()).Scan(&end); err != nil {
		return 0, fmt.Errorf("advance slot %s to %s: %w", name, lsn, err)
	}
	return pglogrepl.ParseLSN(end)
}
