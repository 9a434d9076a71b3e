package replication

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// Slot is a replication slot as pg_replication_slots shows it, read by [ReadSlot]. Replicate,
// checkpoint, status and doctor all read it here, so they agree on its state and its lag.
type Slot struct {
	Name      string
	Plugin    string
	Database  string
	Active    bool
	ActivePID int32 // 0 when inactive
	// ConfirmedLSN is the slot's confirmed_flush_lsn; 0 when the server shows none.
	ConfirmedLSN pglogrepl.LSN
	RestartLSN   pglogrepl.LSN // 0 when the server shows none
	// CurrentLSN is the server's current WAL insert position, or on a standby the last WAL
	// position received; 0 when the server cannot say.
	CurrentLSN pglogrepl.LSN
	// WALStatus is reserved, extended, unreserved or lost (PostgreSQL 13+); empty before.
	WALStatus string
	// Conflicting is true when the slot was invalidated by a conflict with recovery
	// (PostgreSQL 16+, a slot on a standby).
	Conflicting bool
	// InvalidationReason says why the slot was invalidated, empty when it is not (17+).
	InvalidationReason string
	// Failover is true for a slot the standbys synchronize (17+); Synced for one that was
	// synchronized from a primary, also after this server's promotion.
	Failover, Synced bool
}

// Invalidated says whether the server has invalidated the slot: it can never be read again.
func (s Slot) Invalidated() bool {
	return s.WALStatus == "lost" || s.Conflicting || s.InvalidationReason != ""
}

// LagBytes is how much WAL the slot holds beyond its confirmed position: what the replicator
// has yet to confirm. It is 0 when either position is unknown.
func (s Slot) LagBytes() int64 {
	if s.ConfirmedLSN == 0 || s.CurrentLSN < s.ConfirmedLSN {
		return 0
	}
	return int64(s.CurrentLSN - s.ConfirmedLSN)
}

// ReadSlot reads slot name's state, or returns ErrNoSlot (wrapped, naming the slot).
func ReadSlot(ctx context.Context, db Querier, name string) (Slot, error) {
	s := Slot{Name: name}
	var confirmed, restart, current *string
	var pid *int32
	// to_jsonb rather than the columns: each is missing before the version that added it.
	err := db.QueryRow(ctx, `SELECT coalesce(plugin, ''), coalesce(database, ''), active, active_pid,
			confirmed_flush_lsn::text, restart_lsn::text,
			(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END)::text,
			coalesce(to_jsonb(s) ->> 'wal_status', ''), coalesce((to_jsonb(s) ->> 'conflicting')::bool, false),
			coalesce(to_jsonb(s) ->> 'invalidation_reason', ''),
			coalesce((to_jsonb(s) ->> 'failover')::bool, false), coalesce((to_jsonb(s) ->> 'synced')::bool, false)
		FROM pg_replication_slots s WHERE slot_name = $1`, name).
		Scan(&s.Plugin, &s.Database, &s.Active, &pid, &confirmed, &restart, &current, &s.WALStatus, &s.Conflicting,
			&s.InvalidationReason, &s.Failover, &s.Synced)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("%s: %w", name, ErrNoSlot)
	}
	if err != nil {
		return s, fmt.Errorf("read slot %s: %w", name, err)
	}
	if pid != nil {
		s.ActivePID = *pid
	}
	for _, f := range []struct {
		text *string
		lsn  *pglogrepl.LSN
	}{{confirmed, &s.ConfirmedLSN}, {restart, &s.RestartLSN}, {current, &s.CurrentLSN}} {
		if f.text == nil {
			continue
		}
		if *f.lsn, err = pglogrepl.ParseLSN(*f.text); err != nil {
			return s, fmt.Errorf("read slot %s: %w", name, err)
		}
	}
	return s, nil
}
