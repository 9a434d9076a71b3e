package replication

import "errors"

// Errors of package replication, for errors.Is.
var (
	// ErrProtocol wraps every pgoutput message tidemark cannot make sense of.
	ErrProtocol = errors.New("pgoutput protocol error")

	// ErrStreamAhead means the stream holds changes of the slot from further on in the WAL than
	// the server has written: it was filled from another database, or this one went back in time
	// (restored from a backup, or a failover to a standby that had not received everything).
	// Publishing would reuse positions the stream already holds for other changes.
	ErrStreamAhead = errors.New("the stream holds changes from beyond the server's WAL")

	// ErrWALLevel means the server's wal_level is not logical, so no logical slot can exist.
	ErrWALLevel = errors.New("wal_level must be logical")

	// ErrBackward means a checkpoint move would go behind the slot's confirmed LSN, which would
	// need WAL the slot no longer keeps.
	ErrBackward = errors.New("cannot move the slot backward")

	// ErrSlotNotOurs means a slot of the wanted name exists for another database or another
	// output plugin; slot names are shared by the whole cluster.
	ErrSlotNotOurs = errors.New("replication slot belongs to another database or plugin")

	// ErrNoSlot means the replication slot does not exist.
	ErrNoSlot = errors.New("replication slot does not exist")

	// ErrCheckpointCorrupt means a value kept beside the slot's checkpoint (the lost snapshot
	// epochs) cannot be read. Run stops on it: a reconnect would only read it again.
	ErrCheckpointCorrupt = errors.New("unreadable value in the checkpoint store")
)
