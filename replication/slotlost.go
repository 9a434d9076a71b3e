package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrSlotLost means the slot can no longer give the changes committed after the last confirmed
// LSN: they are gone from the WAL for good, and only a new slot and a full snapshot converge
// again. Its errors are *SlotLostError.
var ErrSlotLost = errors.New("replication slot lost")

// The reasons a slot is lost, the reason label of tidemark_replication_slot_lost_total.
const (
	// LostInvalidated: the server invalidated the slot (wal_status lost after
	// max_slot_wal_keep_size, or a conflict with recovery on a standby).
	LostInvalidated = "invalidated"
	// LostDropped: the slot is missing while a checkpoint or this process says it existed.
	LostDropped = "dropped"
	// LostNewPrimary: the server is not the one the checkpoint was taken on (another system
	// identifier or timeline: a failover or a restore) and the slot was not synchronized from
	// it (a PostgreSQL 17 failover slot).
	LostNewPrimary = "new_primary"
	// LostBehindCheckpoint: the slot is confirmed behind the saved checkpoint and the server it
	// was taken on is not known: a slot created anew, on a new primary.
	LostBehindCheckpoint = "behind_checkpoint"
)

// LostReasons lists every reason, for metrics that start at zero.
var LostReasons = []string{LostInvalidated, LostDropped, LostNewPrimary, LostBehindCheckpoint}

// SlotLostError says how a slot was lost and from where changes are missing.
type SlotLostError struct {
	Slot   string
	Reason string // one of the Lost* constants
	// Detail is what the server showed: wal_status, its error message, the timelines.
	Detail string
	// MissingFrom is the last LSN known to be confirmed: changes committed after it may be
	// missing from the stream.
	MissingFrom pglogrepl.LSN
}

func (e *SlotLostError) Error() string {
	return fmt.Sprintf("replication slot %s lost (%s: %s): changes committed after %s are not in the stream and cannot be streamed any more",
		e.Slot, e.Reason, e.Detail, e.MissingFrom)
}

// Is makes errors.Is(err, ErrSlotLost) hold.
func (e *SlotLostError) Is(target error) bool { return target == ErrSlotLost }

// Origin names the server a checkpoint was taken on: its system identifier and timeline, as
// IDENTIFY_SYSTEM reports them ("7301234567890123456/1"). A failover or a restore changes it.
func Origin(sys pglogrepl.IdentifySystemResult) string {
	return fmt.Sprintf("%s/%d", sys.SystemID, sys.Timeline)
}

// SlotCheck is what CheckSlot compares the slot with.
type SlotCheck struct {
	// Saved is the checkpoint (or the LSN this process confirmed); 0 when none: then a missing
	// slot is merely not created yet, unless Streamed.
	Saved pglogrepl.LSN
	// Streamed says this process streamed from the slot: missing now, it was dropped.
	Streamed bool
	// SavedOrigin is the Origin the checkpoint was taken on, empty when unknown; Origin the
	// server's now.
	SavedOrigin, Origin string
}

// CheckSlot reads slot name and returns a *SlotLostError when it is lost (see Lost), or
// ErrNoSlot when it does not exist and nothing says it did.
func CheckSlot(ctx context.Context, db Querier, name string, c SlotCheck) (Slot, error) {
	s, err := ReadSlot(ctx, db, name)
	missing := errors.Is(err, ErrNoSlot)
	if err != nil && !missing {
		return s, err
	}
	if lost := Lost(name, s, missing, c); lost != nil {
		return s, lost
	}
	return s, err
}

// Lost says whether slot name, as ReadSlot read it (missing when it does not exist), is lost:
// invalidated, missing while c.Saved or c.Streamed says it existed, on a new primary it was not
// synchronized to, or (origin unknown) confirmed behind c.Saved. A slot behind the checkpoint
// on the same server is not lost: PostgreSQL persists confirmed_flush_lsn only at checkpoints,
// so after a crash the slot goes back a little and replays what the stream already holds.
// replicate, doctor and status all decide with it.
func Lost(name string, s Slot, missing bool, c SlotCheck) *SlotLostError {
	if missing {
		if c.Saved == 0 && !c.Streamed {
			return nil
		}
		detail := fmt.Sprintf("the slot does not exist, and a checkpoint at %s says it did", c.Saved)
		if c.Saved == 0 {
			detail = "the slot does not exist any more, and this replicator streamed from it"
		}
		return &SlotLostError{Slot: name, Reason: LostDropped, MissingFrom: c.Saved, Detail: detail}
	}
	from := max(c.Saved, s.ConfirmedLSN)
	switch {
	case s.Invalidated():
		detail := "wal_status " + s.WALStatus
		if s.InvalidationReason != "" {
			detail += ", invalidation_reason " + s.InvalidationReason
		}
		if s.Conflicting {
			detail += ", conflicting with recovery"
		}
		return &SlotLostError{Slot: name, Reason: LostInvalidated, MissingFrom: from, Detail: detail + ": WAL it needed was removed"}
	case c.SavedOrigin != "" && c.Origin != "" && c.SavedOrigin != c.Origin && !s.Synced:
		return &SlotLostError{Slot: name, Reason: LostNewPrimary, MissingFrom: c.Saved,
			Detail: fmt.Sprintf("the checkpoint was taken on %s, this server is %s, and the slot was not synchronized from it (confirmed %s)",
				c.SavedOrigin, c.Origin, s.ConfirmedLSN)}
	case c.SavedOrigin == "" && c.Saved != 0 && s.ConfirmedLSN < c.Saved:
		return &SlotLostError{Slot: name, Reason: LostBehindCheckpoint, MissingFrom: c.Saved,
			Detail: fmt.Sprintf("the slot is confirmed up to %s, behind the saved checkpoint %s: it was created anew (a new primary?)",
				s.ConfirmedLSN, c.Saved)}
	}
	return nil
}

// ServerOrigin reads the Origin of the server db is connected to over SQL, as IDENTIFY_SYSTEM
// would report it on a replication connection: the system identifier, and the timeline WAL is
// written on (the timeline of the current WAL file's name). On a standby, which writes no WAL,
// it is "" and no error: there is nothing to compare. An error (the functions it calls revoked,
// say) means the origin is unknown on a server that has one.
func ServerOrigin(ctx context.Context, db Querier) (string, error) {
	// A query of its own: privileges are checked for every function a query names, so one
	// query would fail on a standby for a role refused the functions it does not need there.
	var standby bool
	if err := db.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return "", fmt.Errorf("read whether the server is a standby: %w", err)
	}
	if standby {
		return "", nil
	}
	var origin string
	// system_identifier is a signed bigint in SQL; IDENTIFY_SYSTEM prints it unsigned.
	err := db.QueryRow(ctx, `SELECT (system_identifier::numeric + CASE WHEN system_identifier < 0 THEN 18446744073709551616 ELSE 0 END)::text || '/' ||
		('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int
		FROM pg_control_system()`).Scan(&origin)
	if err != nil {
		return "", fmt.Errorf("read the server's system identifier and timeline: %w", err)
	}
	return origin, nil
}

// maybeSlotLost says whether a replication error may mean the slot is lost rather than a
// transient failure: 55000 "cannot read from logical replication slot" (invalidated) or 42704
// (the slot does not exist). CheckSlot then says for sure.
func maybeSlotLost(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "42704":
		return true
	case "55000":
		return strings.Contains(pgErr.Message, "replication slot")
	}
	return false
}

// RecreateSlot drops slot name when it exists (it must be inactive) and creates it anew with
// pgoutput, as a failover slot when the server supports them (PostgreSQL 17+), so that a
// standby with sync_replication_slots keeps it across a failover. It returns the LSN from which
// the new slot streams.
func RecreateSlot(ctx context.Context, db Querier, name string) (pglogrepl.LSN, error) {
	_, err := db.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", name)
	if err != nil {
		return 0, fmt.Errorf("drop replication slot %s: %w", name, err)
	}
	if _, err := EnsureSlot(ctx, db, name); err != nil {
		return 0, err
	}
	s, err := ReadSlot(ctx, db, name)
	if err != nil {
		return 0, err
	}
	return s.ConfirmedLSN, nil
}

// createSlot creates a pgoutput slot, with failover on servers that have failover slots.
func createSlot(ctx context.Context, db Querier, name string) error {
	var version int
	if err := db.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		return fmt.Errorf("read server_version_num: %w", err)
	}
	if version >= 170000 {
		// (slot_name, plugin, temporary, twophase, failover)
		_, err := db.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)", name)
		return err
	}
	_, err := db.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", name)
	return err
}

// connectQuerier opens a normal connection for a check; close it with the returned func.
func connectQuerier(ctx context.Context, connString string) (*pgx.Conn, func(), error) {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to check the slot: %w", err)
	}
	return conn, func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}, nil
}
