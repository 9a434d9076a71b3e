package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/event"
)

// session state, owned by the goroutine running session.
type session struct {
	conn      *pgconn.PgConn
	written   pglogrepl.LSN // WALStart + len(WALData) of the last XLogData
	enqueued  pglogrepl.LSN // end LSN of the last commit whose changes were all enqueued
	serverEnd pglogrepl.LSN // the server's sent position from keepalives
	inTxn     bool
	published int // changes published since the last Flush
	commits   int // commits since the last flush
	saved     pglogrepl.LSN
	dec       *decoder
	txnTS     time.Time // commit time of the transaction being received

	// stored is the position of the last change the stream held at the start, zero once the
	// replay has caught up with it; skipped counts the changes not published again until then.
	stored   event.Position
	skipped  int
	counters map[event.Op]prometheus.Counter
}

// session runs one replication connection. It reports whether it got as far as streaming.
func (r *Replicator) session(ctx context.Context) (streamed bool, err error) {
	// The stream is the record of what is published: a replay from the confirmed LSN skips
	// what it already holds, however long ago it was stored.
	stored, err := r.pub.Resume(ctx, r.cfg.Slot)
	if err != nil {
		return false, fmt.Errorf("read the stream's last change: %w", err)
	}
	conn, err := r.connect(ctx)
	if err != nil {
		return false, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	startLSN, err := r.startReplication(ctx, conn, stored)
	if err != nil {
		return false, err
	}
	if err := r.syncLostEpochs(ctx, stored.CommitLSN); err != nil {
		return false, err
	}
	r.streamed = true
	r.ready.Store(true)
	defer r.ready.Store(false)
	return true, r.stream(ctx, r.newSession(conn, startLSN, stored))
}

// connect opens the replication connection.
func (r *Replicator) connect(ctx context.Context) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(r.cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "tidemark replicate"
	// Value decoding relies on ISO dates in UTC.
	cfg.RuntimeParams["DateStyle"] = "ISO"
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["IntervalStyle"] = "iso_8601"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect for replication: %w", err)
	}
	return conn, nil
}

// startReplication checks the slot and the stream against the server and starts streaming
// from the flushed LSN, which it returns.
func (r *Replicator) startReplication(ctx context.Context, conn *pgconn.PgConn, stored event.Position) (pglogrepl.LSN, error) {
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return 0, fmt.Errorf("identify system: %w", err)
	}
	if err := r.checkSlot(ctx, Origin(sys)); err != nil {
		return 0, err
	}
	if pglogrepl.LSN(stored.CommitLSN) > sys.XLogPos {
		return 0, fmt.Errorf("%w: the last change of slot %s in the stream is at %s, the server's WAL ends at %s; "+
			"nothing was published (see the README: a stream from elsewhere)", ErrStreamAhead, r.cfg.Slot, stored, sys.XLogPos)
	}
	startLSN := r.Flushed()
	if !stored.IsZero() {
		r.log.Info("the stream holds the slot's changes up to a position; replaying from the confirmed LSN publishes only what comes after it",
			"position", stored, "confirmed", startLSN)
	}
	err = pglogrepl.StartReplication(ctx, conn, r.cfg.Slot, startLSN, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + quoteLiteral(r.cfg.Publication),
			"messages 'true'",
		},
	})
	if err != nil {
		return 0, fmt.Errorf("start replication on slot %s: %w", r.cfg.Slot, err)
	}
	r.log.Info("streaming", "slot", r.cfg.Slot, "publication", r.cfg.Publication, "from", startLSN)
	return startLSN, nil
}

func (r *Replicator) newSession(conn *pgconn.PgConn, startLSN pglogrepl.LSN, stored event.Position) *session {
	dec := newDecoder(r.cfg.Slot)
	dec.marks.stored = pglogrepl.LSN(stored.CommitLSN)
	dec.marks.lost = r.lost
	s := &session{conn: conn, enqueued: startLSN, saved: startLSN, dec: dec, stored: stored,
		counters: map[event.Op]prometheus.Counter{}}
	for _, op := range []event.Op{event.OpInsert, event.OpUpdate, event.OpDelete, event.OpTruncate, event.OpSnapshot, event.OpEpochOpen, event.OpEpochClose} {
		s.counters[op] = r.changes.WithLabelValues(string(op))
	}
	return s
}

// stream receives and handles the server's messages, flushing and reporting every
// StatusInterval, until the session ends.
func (r *Replicator) stream(ctx context.Context, s *session) error {
	emit := func(c *event.Change) error { return r.publish(ctx, s, c) }
	netConn := s.conn.Conn()
	// Cancellation interrupts a blocked read at once.
	stopCancel := context.AfterFunc(ctx, func() { _ = netConn.SetReadDeadline(time.Now()) })
	defer stopCancel()
	var deadline time.Time
	next := time.Now().Add(r.cfg.StatusInterval)
	for {
		if now := time.Now(); !now.Before(next) || s.commits >= r.cfg.FlushCommits || r.stopReached(s) {
			if err := r.flushAndReport(ctx, s); err != nil {
				return err
			}
			next = now.Add(r.cfg.StatusInterval)
			if r.cfg.StopAtLSN != 0 && r.Flushed() >= r.cfg.StopAtLSN {
				r.log.Info("reached --stop-at-lsn", "lsn", r.Flushed())
				return r.shutdown(ctx, s)
			}
		}
		// A read deadline on the socket rather than a context per message: pgconn would
		// arm a context watcher for every one, which costs more than decoding it.
		if !next.Equal(deadline) {
			deadline = next
			if err := netConn.SetReadDeadline(deadline); err != nil {
				return fmt.Errorf("set read deadline: %w", err)
			}
		}
		if ctx.Err() != nil {
			return r.shutdown(ctx, s)
		}
		msg, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			// After cancellation pgconn's error also reports Timeout: check ctx first.
			if ctx.Err() != nil {
				return r.shutdown(ctx, s)
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		if done, err := r.receive(ctx, s, msg, emit); done {
			return err
		}
	}
}

// receive handles one message from the server. done says that the session ends, with err.
func (r *Replicator) receive(ctx context.Context, s *session, msg pgproto3.BackendMessage, emit func(*event.Change) error) (done bool, err error) {
	switch msg := msg.(type) {
	case *pgproto3.CopyData:
		if len(msg.Data) == 0 {
			return false, nil
		}
		switch msg.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			if err := r.keepalive(ctx, s, msg.Data[1:]); err != nil {
				return true, err
			}
		case pglogrepl.XLogDataByteID:
			return r.xlogData(ctx, s, msg.Data[1:], emit)
		}
	case *pgproto3.ErrorResponse:
		return true, fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyDone:
		return true, errors.New("server ended the replication stream")
	}
	return false, nil
}

// keepalive records the server's position and replies at once when the server asks for it.
func (r *Replicator) keepalive(ctx context.Context, s *session, data []byte) error {
	pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(data)
	if err != nil {
		return fmt.Errorf("%w: keepalive: %w", ErrProtocol, err)
	}
	s.serverEnd = max(s.serverEnd, pkm.ServerWALEnd)
	if pkm.ReplyRequested {
		return r.sendStatus(ctx, s)
	}
	return nil
}

// xlogData decodes one WAL message, publishing its changes through emit. done says that the
// session ends, with err.
func (r *Replicator) xlogData(ctx context.Context, s *session, data []byte, emit func(*event.Change) error) (done bool, err error) {
	xld, err := pglogrepl.ParseXLogData(data)
	if err != nil {
		return true, fmt.Errorf("%w: xlogdata: %w", ErrProtocol, err)
	}
	res, err := s.dec.decode(xld.WALStart, xld.WALData, emit)
	if err != nil {
		if ctx.Err() != nil {
			return true, r.shutdown(ctx, s)
		}
		return true, fmt.Errorf("decode at %s: %w", xld.WALStart, err)
	}
	r.logUnpublished(s.dec)
	if s.dec.marks.lostChanged {
		if err := r.noteLostEpochs(ctx, &s.dec.marks); err != nil {
			return true, err
		}
	}
	s.written = max(s.written, xld.WALStart+pglogrepl.LSN(len(xld.WALData)))
	switch res.kind {
	case msgBegin:
		s.inTxn = true
		s.txnTS = res.commitTS
		r.unconfirmedSince.CompareAndSwap(0, s.txnTS.UnixNano())
	case msgCommit:
		s.inTxn = false
		s.enqueued = res.endLSN
		s.commits++
		r.transactions.Inc()
	case msgMessage:
		if !s.inTxn {
			// A non-transactional message (the heartbeat): everything before it
			// has been received, so an idle slot may move up to it.
			s.serverEnd = max(s.serverEnd, res.endLSN)
		}
	}
	return false, nil
}

// logUnpublished names the snapshot chunks and epochs, and the truncate messages, the decoder
// did not publish.
func (r *Replicator) logUnpublished(dec *decoder) {
	expired, overflowed, unclosed, passedOver := dec.unpublished()
	if len(expired) > 0 {
		r.log.Error("snapshot chunks arrived after their windows expired and were not published; run tidemark snapshot for their suppliers again",
			"chunks", expired)
	}
	if len(overflowed) > 0 {
		r.log.Error("snapshot chunks saw more changes of their keys while they were read than the replicator keeps track of, and were not published; run tidemark snapshot for their suppliers again",
			"chunks", overflowed, "max_keys", MaxWindowKeys)
	}
	if len(unclosed) > 0 {
		r.log.Error("snapshot epochs lost chunks and were not closed, so subscribers keep the products they hold; run tidemark snapshot for their suppliers again",
			"epochs", unclosed)
	}
	if len(passedOver) > 0 {
		r.log.Warn("truncate messages that do not name a supplier partition of products were not published (written by hand, not by the partitions' trigger)",
			"messages", passedOver)
	}
}

// publish hands one decoded change to the publisher, unless the stream already holds it.
func (r *Replicator) publish(ctx context.Context, s *session, c *event.Change) error {
	if !s.stored.IsZero() {
		if c.Position().Compare(s.stored) <= 0 {
			s.skipped++
			r.skipped.Inc()
			return nil
		}
		r.log.Info("caught up with the stream; publishing", "skipped", s.skipped, "from", c.Position())
		s.stored = event.Position{}
	}
	if err := r.pub.Publish(ctx, c); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	s.published++
	s.counters[c.Op].Inc()
	return nil
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
