package replication

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

// stopReached says whether everything up to StopAtLSN has been received, so waiting for the
// next status interval would only delay the stop.
func (r *Replicator) stopReached(s *session) bool {
	stop := r.cfg.StopAtLSN
	return stop != 0 && !s.inTxn && (s.enqueued >= stop || (s.serverEnd >= stop && s.enqueued <= r.Flushed()))
}

// flushAndReport waits for the acks of everything enqueued, moves the flushed LSN to the
// last commit enqueued before the wait, saves the checkpoint and tells the server.
func (r *Replicator) flushAndReport(ctx context.Context, s *session) error {
	flushed := r.Flushed()
	if s.enqueued > flushed {
		target := s.enqueued
		if s.published > 0 {
			if err := r.pub.Flush(ctx); err != nil {
				return fmt.Errorf("flush: %w", err)
			}
			s.published = 0
		}
		flushed = target
		s.commits = 0
	}
	hold, holding := s.dec.holdLSN()
	if !s.inTxn && s.enqueued <= flushed && s.serverEnd > flushed {
		// Nothing pending: the slot may move to where the server has read, so an idle slot
		// holds no WAL. Not past an open window's low watermark (below) — also not as
		// enqueued: the server's position can be at the commit of the chunk that closes the
		// window, before that transaction arrives, and a flush inside it would then confirm
		// past the low watermark.
		flushed = s.serverEnd
		if holding && flushed > hold {
			flushed = max(hold, r.Flushed())
		}
		s.enqueued = max(s.enqueued, flushed)
	}
	if holding && flushed > hold {
		// A snapshot window is open: the slot must not move past its low watermark, or a
		// restart would see the chunk without the window that filters it.
		flushed = max(hold, r.Flushed())
	}
	r.setFlushed(flushed)
	if err := r.sendStatus(ctx, s); err != nil {
		return err
	}
	r.saveCheckpoint(s)
	return nil
}

func (r *Replicator) setFlushed(lsn pglogrepl.LSN) {
	if lsn > r.Flushed() {
		r.flushed.Store(uint64(lsn))
	}
	r.confirmed.Set(float64(lsn))
}

// saveCheckpoint hands the flushed LSN to the checkpoint saver without waiting for it: a
// KV write in the receive loop would stall decoding for a round trip every interval.
func (r *Replicator) saveCheckpoint(s *session) {
	flushed := r.Flushed()
	if r.cfg.Checkpoints == nil || flushed == s.saved {
		return
	}
	// Only the latest position matters: replace one the saver has not taken yet.
	select {
	case r.saves <- flushed:
	default:
		select {
		case <-r.saves:
		default:
		}
		r.saves <- flushed
	}
	s.saved = flushed
}

// saveLoop writes checkpoints handed over by saveCheckpoint until the channel is closed,
// which happens after the final one.
func (r *Replicator) saveLoop(ctx context.Context) error {
	for lsn := range r.saves {
		// Not ctx itself: the final checkpoint is saved after cancellation.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if err := r.cfg.Checkpoints.Save(sctx, r.cfg.Slot, lsn); err != nil {
			// The slot is the authority; the saved copy catches up at the next flush.
			r.log.Warn("save checkpoint", "err", err, "lsn", lsn)
		}
		cancel()
	}
	return nil
}

func (r *Replicator) sendStatus(ctx context.Context, s *session) error {
	flushed := r.Flushed()
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: max(s.written, flushed),
		WALFlushPosition: flushed,
		WALApplyPosition: flushed,
	})
	if err != nil {
		return fmt.Errorf("send standby status update: %w", err)
	}
	r.sent = flushed
	if end := max(s.serverEnd, s.written); end > flushed {
		r.lagBytes.Set(float64(end - flushed))
	} else {
		r.lagBytes.Set(0)
	}
	if s.enqueued <= flushed {
		var since int64 // everything received is confirmed, but the transaction being received
		if s.inTxn {
			since = s.txnTS.UnixNano()
		}
		r.unconfirmedSince.Store(since)
	}
	return nil
}

// shutdown flushes what is enqueued, reports the final position and ends the stream, with a
// fresh bounded context because ctx is usually done by now.
func (r *Replicator) shutdown(ctx context.Context, s *session) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	if s.enqueued > r.Flushed() {
		if err := r.pub.Flush(sctx); err != nil {
			r.log.Warn("final flush failed; the unacknowledged changes will be replayed", "err", err)
		} else {
			r.setFlushed(s.enqueued)
		}
	}
	r.saveCheckpoint(s)
	if err := r.sendStatus(sctx, s); err != nil {
		return err
	}
	// CopyDone waits for the server's reply without a context: bound it with a deadline.
	if nc := s.conn.Conn(); nc != nil {
		_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
	}
	if _, err := pglogrepl.SendStandbyCopyDone(sctx, s.conn); err != nil {
		r.log.Debug("copy done", "err", err)
	}
	r.log.Info("stopped streaming", "confirmed", r.Flushed())
	return nil
}
