package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/snapshot"
)

// exitSlotLost is replicate's exit status when the slot is lost and --on-slot-lost is fail.
const exitSlotLost = 5

// slotLostExit turns a lost slot into replicate's exit status and message: what happened, from
// where changes are missing, and the command that converges again.
func (c *ReplicateCmd) slotLostExit(lost *replication.SlotLostError) exitCode {
	return exitCode{code: exitSlotLost, msg: fmt.Sprintf(`%v.
To converge again, let replicate re-create the slot and snapshot every supplier while streaming resumes:
    tidemark replicate --on-slot-lost resync   (with the other flags you run it with)
or set TIDEMARK_ON_SLOT_LOST=resync; see the README, "When the slot is lost"`, lost)}
}

// slotWasLost says whether the slot is missing while a checkpoint says it existed: then it must
// not be created here as if for a first run, which would stream on from now and hide the
// loss; the replicator detects it and fails or resyncs.
func (c *ReplicateCmd) slotWasLost(ctx context.Context, g *Globals, log *slog.Logger, pool *pgxpool.Pool) (bool, error) {
	_, err := replication.ReadSlot(ctx, pool, c.Slot)
	if !errors.Is(err, replication.ErrNoSlot) {
		return false, err
	}
	saved, err := loadSaved(ctx, g, log, c.Slot, nats.Timeout(serviceConnectTimeout))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("slot %s does not exist; read the checkpoint to tell a first run from a dropped slot: %w", c.Slot, err)
	}
	return saved != 0, nil
}

// resyncer replaces a lost slot: it records a snapshot of every supplier (in the database, so a
// restart after a crash resumes it), re-creates the slot, saves its start as the checkpoint and
// has the snapshot runner publish every row again while the replicator streams.
type resyncer struct {
	c      *ReplicateCmd
	g      *Globals
	log    *slog.Logger
	cps    replication.Checkpoints
	runner *snapshotRunner
}

// resync is the replicator's OnSlotLost.
func (x *resyncer) resync(ctx context.Context, lost *replication.SlotLostError) (pglogrepl.LSN, error) {
	start := time.Now()
	// A snapshot running now reads for the lost slot's successor only after the slot is
	// replaced: stop it, it starts over below.
	x.runner.pause()
	pool, err := x.g.Pool(ctx, x.log)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	var ids []int32
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		list, err := catalog.ListSuppliers(ctx, tx)
		for _, s := range list {
			ids = append(ids, s.ID)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("list suppliers: %w", err)
	}
	// Recorded before the slot is replaced: a crash from here on either finds the slot lost
	// again (and comes back here) or finds the new slot and these snapshots unfinished.
	if err := snapshot.Restart(ctx, pool, ids); err != nil {
		return 0, err
	}
	lsn, err := replication.RecreateSlot(ctx, pool, x.c.Slot)
	if err != nil {
		return 0, err
	}
	if err := x.cps.Save(ctx, x.c.Slot, lsn); err != nil {
		return 0, fmt.Errorf("new slot %s streams from %s, but the checkpoint was not saved: %w", x.c.Slot, lsn, err)
	}
	x.runner.resyncStarted(start)
	x.runner.kick()
	x.log.Warn("resync: re-created the replication slot; snapshotting every supplier",
		"slot", x.c.Slot, "reason", lost.Reason, "missing_from", lost.MissingFrom, "new_slot_from", lsn,
		"suppliers", len(ids))
	return lsn, nil
}

// snapshotRunner runs the recorded, unfinished snapshots (snapshot.Unfinished) one supplier at
// a time whenever it is kicked, while the replicator streams. A resync pauses it, since it
// starts every snapshot over.
type snapshotRunner struct {
	g     *Globals
	log   *slog.Logger
	chunk int
	kicks chan struct{}

	mu     sync.Mutex
	paused bool
	cancel context.CancelFunc // of the round running, nil when none
	done   chan struct{}      // closed when that round returns
	resync time.Time          // start of the resync the next round completes, zero when none
}

func newSnapshotRunner(g *Globals, log *slog.Logger, chunk int) *snapshotRunner {
	return &snapshotRunner{g: g, log: log, chunk: chunk, kicks: make(chan struct{}, 1)}
}

// kick asks for a round (and ends a pause).
func (s *snapshotRunner) kick() {
	s.mu.Lock()
	s.paused = false
	s.mu.Unlock()
	select {
	case s.kicks <- struct{}{}:
	default:
	}
}

// pause stops the round running, if any, waits for it to return and keeps new rounds from
// starting until the next kick.
func (s *snapshotRunner) pause() {
	s.mu.Lock()
	s.paused = true
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (s *snapshotRunner) resyncStarted(t time.Time) {
	s.mu.Lock()
	s.resync = t
	s.mu.Unlock()
}

// run serves kicks until ctx is done. A failed snapshot ends it with the error (replicate
// stops); one stopped by a pause or by ctx is resumed by the next round or the next run.
func (s *snapshotRunner) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kicks:
		}
		s.mu.Lock()
		if s.paused {
			s.mu.Unlock()
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		s.cancel, s.done = cancel, done
		resync := s.resync
		s.mu.Unlock()

		err := s.round(rctx, resync)

		s.mu.Lock()
		s.cancel, s.done = nil, nil
		if err == nil && s.resync.Equal(resync) {
			s.resync = time.Time{}
		}
		s.mu.Unlock()
		cancel()
		close(done)
		if err != nil && rctx.Err() == nil {
			return err
		}
	}
}

// round runs every unfinished snapshot.
func (s *snapshotRunner) round(ctx context.Context, resync time.Time) error {
	pool, err := s.g.Pool(ctx, s.log)
	if err != nil {
		return err
	}
	defer pool.Close()
	ids, err := snapshot.Unfinished(ctx, pool)
	if err != nil || len(ids) == 0 {
		return err
	}
	s.log.Info("snapshot starting", "suppliers", len(ids))
	var rows int64
	for _, id := range ids {
		res, err := snapshot.Supplier(ctx, pool, id, snapshot.Options{ChunkSize: s.chunk, Log: s.log})
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return ctx.Err() // paused or stopping: resumed later
		}
		if err != nil {
			return fmt.Errorf("snapshot of supplier %d: %w", id, err)
		}
		rows += res.Rows
		s.log.Info("snapshot of supplier written", "supplier", id, "rows", res.Rows, "resumed", res.Resumed)
	}
	s.log.Info("snapshot done", "suppliers", len(ids), "rows", rows)
	if !resync.IsZero() {
		s.log.Info("resync done: every supplier's rows are in the WAL for the new slot", "suppliers", len(ids), "rows", rows,
			"took", time.Since(resync).Round(time.Millisecond))
	}
	return nil
}
