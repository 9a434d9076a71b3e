package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/tidemark/tidemark/event"
	"golang.org/x/sync/errgroup"
)

// Publisher is where the replicator sends changes. Resume starts a session: it settles what
// the previous one left in flight and returns the position of the last change of slot that the
// publisher's destination holds, which must be gap-free and in order up to there (the zero
// Position when it holds none); the session publishes only changes after it. Publish enqueues
// one change and may block only for back-pressure (a bounded number of unacknowledged
// messages); it must not keep c, which the replicator reuses, after it returns. Flush blocks
// until every change enqueued before it has been acknowledged. Once a change has failed,
// Publish and Flush return that failure until the next Resume.
type Publisher interface {
	Resume(ctx context.Context, slot string) (event.Position, error)
	Publish(ctx context.Context, c *event.Change) error
	Flush(ctx context.Context) error
}

// Checkpoints stores the confirmed LSN of a slot outside PostgreSQL, so an operator can see
// it and resume from it.
type Checkpoints interface {
	// Load returns the saved LSN of slot, or 0 when none is saved.
	Load(ctx context.Context, slot string) (pglogrepl.LSN, error)
	// Save records lsn as slot's confirmed position.
	Save(ctx context.Context, slot string, lsn pglogrepl.LSN) error
}

// Config tunes a Replicator.
type Config struct {
	// ConnString is a normal PostgreSQL connection string; the replicator adds
	// replication=database for its replication connection and uses it as is for heartbeats.
	ConnString string
	// Slot is the logical replication slot (pgoutput) to stream from.
	Slot string
	// Publication is the publication whose tables are streamed.
	Publication string
	// StartLSN, when not 0, is where to start instead of the saved checkpoint or the slot.
	StartLSN pglogrepl.LSN
	// StopAtLSN, when not 0, makes Run return nil once the flushed LSN reaches it.
	StopAtLSN pglogrepl.LSN
	// StatusInterval is how often acknowledged changes are flushed and the slot told about
	// them; default 1s (see [DefaultConfig] for every default).
	StatusInterval time.Duration
	// FlushCommits also flushes once this many commits wait to be confirmed; default 10000.
	FlushCommits int
	// Heartbeat is how often a logical message is written so an idle slot advances while
	// the database is busy elsewhere; 0 disables it (tidemark replicate's default is 10s).
	Heartbeat time.Duration
	// ShutdownTimeout bounds the final flush and status update; default 5s.
	ShutdownTimeout time.Duration
	// MaxBackoff caps the wait between reconnects; default 10s.
	MaxBackoff time.Duration
	// Checkpoints, when set, saves the confirmed LSN after each successful flush. When it also
	// implements Origins, a checkpoint taken on another server (a failover) is detected; when
	// it implements LostEpochs, the snapshot epochs that lost a chunk are kept there, so that
	// no later process publishes their close.
	Checkpoints Checkpoints
	// OnSlotLost, when set, is called when the slot is lost (see ErrSlotLost) and returns the
	// LSN a new slot streams from; streaming resumes from there. When nil, Run returns the
	// *SlotLostError.
	OnSlotLost func(ctx context.Context, lost *SlotLostError) (pglogrepl.LSN, error)
}

// Origins keeps, beside a slot's checkpoint, the Origin of the server it was taken on.
type Origins interface {
	// LoadOrigin returns the saved origin of slot, "" when none is saved.
	LoadOrigin(ctx context.Context, slot string) (string, error)
	SaveOrigin(ctx context.Context, slot, origin string) error
}

var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// Replicator streams the changes of a publication from a slot to a Publisher.
type Replicator struct {
	cfg Config
	pub Publisher
	log *slog.Logger

	ready   atomic.Bool
	flushed atomic.Uint64
	saves   chan pglogrepl.LSN // checkpoints for saveLoop, latest only

	changes      *prometheus.CounterVec
	transactions prometheus.Counter
	lagBytes     prometheus.Gauge
	confirmed    prometheus.Gauge
	reconnects   prometheus.Counter
	skipped      prometheus.Counter
	slotLost     *prometheus.CounterVec
	resyncs      prometheus.Counter
	epochsLost   prometheus.Counter

	// Owned by the goroutine running loop: the checkpoint loaded at start (or set by a
	// resync), the origin it was taken on, and the last LSN this process confirmed.
	saved       pglogrepl.LSN
	savedOrigin string
	sent        pglogrepl.LSN
	streamed    bool          // a session of this process streamed from the slot
	seen        pglogrepl.LSN // the slot's confirmed LSN when last found fine
	// lost are the snapshot epochs that lost a chunk (lostepochs.go); unsaved says a change
	// to them is not saved yet.
	lost    map[string]*LostEpoch
	unsaved bool
	// unconfirmedSince is the commit time (Unix nanoseconds) of the oldest transaction
	// received and not yet confirmed, 0 when there is none. It outlives a session: a failed
	// one leaves its transactions to be replayed, and the slot lags by their age meanwhile.
	unconfirmedSince atomic.Int64
}

// New builds a Replicator; Run starts it.
func New(cfg Config, pub Publisher, log *slog.Logger, reg prometheus.Registerer) (*Replicator, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	f := promauto.With(reg)
	r := &Replicator{
		cfg: cfg, pub: pub, log: log,
		changes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_replication_changes_total", Help: "Row changes decoded and published, by operation.",
		}, []string{"op"}),
		transactions: f.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_replication_transactions_total", Help: "Transactions decoded.",
		}),
		lagBytes: f.NewGauge(prometheus.GaugeOpts{
			Name: "tidemark_replication_slot_lag_bytes", Help: "WAL bytes between the server's position and the confirmed LSN.",
		}),
		confirmed: f.NewGauge(prometheus.GaugeOpts{
			Name: "tidemark_replication_confirmed_lsn", Help: "The confirmed (flushed) LSN reported to the slot, as a number.",
		}),
		reconnects: f.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_replication_reconnects_total", Help: "Replication sessions restarted after an error.",
		}),
		skipped: f.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_replication_skipped_total", Help: "Changes replayed from the WAL and not published again because the stream already held them.",
		}),
		slotLost: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_replication_slot_lost_total",
			Help: "Times the slot was found lost (its changes gone from the WAL), by reason: invalidated, dropped, new_primary, behind_checkpoint.",
		}, []string{"reason"}),
		resyncs: f.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_replication_resyncs_total", Help: "Lost slots replaced by a new slot and a snapshot of every supplier (--on-slot-lost resync).",
		}),
		epochsLost: f.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_replication_epochs_lost_total",
			Help: "Snapshot epochs found to have lost a chunk (its window expired or overflowed): their close is never published; snapshot their suppliers again with --new-epoch.",
		}),
	}
	for _, reason := range LostReasons {
		r.slotLost.WithLabelValues(reason)
	}
	// Read at scrape time: while publishing is stuck (NATS down) nothing else would update it.
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tidemark_replication_slot_lag_seconds",
		Help: "Age of the oldest transaction received and not yet confirmed to the slot, by its commit time on the server's clock; 0 when everything received is confirmed.",
	}, func() float64 {
		since := r.unconfirmedSince.Load()
		if since == 0 {
			return 0
		}
		return max(time.Since(time.Unix(0, since)).Seconds(), 0)
	})
	return r, nil
}

// Ready returns nil while the replicator is streaming, else why not.
func (r *Replicator) Ready() error {
	if r.ready.Load() {
		return nil
	}
	return errors.New("not streaming")
}

// Flushed is the LSN up to which every change is acknowledged (the slot's confirmed LSN once
// reported).
func (r *Replicator) Flushed() pglogrepl.LSN { return pglogrepl.LSN(r.flushed.Load()) }

// Run streams until ctx is done (a clean stop: final flush and status update, nil returned),
// StopAtLSN is reached, or an error that a reconnect cannot fix. Connection, publishing and
// acknowledgement failures restart the session from the last confirmed LSN after a backoff.
// Run may be called once.
func (r *Replicator) Run(ctx context.Context) error {
	start := r.cfg.StartLSN
	if start == 0 && r.cfg.Checkpoints != nil {
		saved, err := r.cfg.Checkpoints.Load(ctx, r.cfg.Slot)
		if err != nil {
			return fmt.Errorf("load checkpoint: %w", err)
		}
		start = saved
		r.saved = saved
		if o, ok := r.cfg.Checkpoints.(Origins); ok {
			if r.savedOrigin, err = o.LoadOrigin(ctx, r.cfg.Slot); err != nil {
				return fmt.Errorf("load checkpoint origin: %w", err)
			}
		}
	}
	r.flushed.Store(uint64(start))
	if start != 0 {
		r.log.Info("starting from LSN", "lsn", start, "from_lsn", r.cfg.StartLSN != 0)
	}
	g, gctx := errgroup.WithContext(ctx)
	// The heartbeat has no reason to outlive the stream.
	hbCtx, stopHeartbeat := context.WithCancel(gctx)
	if r.cfg.Heartbeat > 0 {
		g.Go(func() error { return r.heartbeat(hbCtx) })
	}
	r.saves = make(chan pglogrepl.LSN, 1)
	if r.cfg.Checkpoints != nil {
		g.Go(func() error { return r.saveLoop(gctx) })
	}
	g.Go(func() error {
		defer stopHeartbeat()
		defer close(r.saves)
		return r.loop(gctx)
	})
	return g.Wait()
}

// loop runs sessions, reconnecting with backoff.
func (r *Replicator) loop(ctx context.Context) error {
	backoff := 250 * time.Millisecond
	for {
		streamed, err := r.session(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		var lost *SlotLostError
		if !errors.As(err, &lost) && maybeSlotLost(err) {
			// The error suggests a lost slot; the slot's state says for sure.
			if cerr := r.checkSlot(ctx, ""); errors.As(cerr, &lost) {
				err = cerr
			}
		}
		if lost != nil {
			r.slotLost.WithLabelValues(lost.Reason).Inc()
			r.log.Error("replication slot lost: the changes after the last confirmed LSN are gone from the WAL",
				"slot", lost.Slot, "reason", lost.Reason, "missing_from", lost.MissingFrom, "detail", lost.Detail,
				"resync", r.cfg.OnSlotLost != nil)
			if r.cfg.OnSlotLost == nil {
				return lost
			}
			rerr := r.resync(ctx, lost)
			if rerr == nil {
				backoff = 250 * time.Millisecond
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn("resync failed; retrying", "err", rerr, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, r.cfg.MaxBackoff)
			continue
		}
		if errors.Is(err, ErrProtocol) || errors.Is(err, ErrWALLevel) || errors.Is(err, ErrStreamAhead) || errors.Is(err, ErrCheckpointCorrupt) {
			return err
		}
		wait := backoff
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" {
			// Another replicator holds the slot: stand by and take over when it lets go.
			r.log.Info("slot is in use by another replicator; standing by", "slot", r.cfg.Slot, "detail", pgErr.Message)
			wait = time.Second
		} else {
			r.reconnects.Inc()
			if streamed {
				backoff = 250 * time.Millisecond
				wait = backoff
			}
			r.log.Warn("replication interrupted; resuming from the confirmed LSN", "err", err, "lsn", r.Flushed(), "retry_in", wait)
			backoff = min(backoff*2, r.cfg.MaxBackoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// checkSlot returns a *SlotLostError when the slot is lost (see CheckSlot), origin being the
// server's Origin now ("" when not known). A slot found fine on a new server records its
// origin beside the checkpoint.
func (r *Replicator) checkSlot(ctx context.Context, origin string) error {
	conn, closeConn, err := connectQuerier(ctx, r.cfg.ConnString)
	if err != nil {
		return err
	}
	defer closeConn()
	slot, err := CheckSlot(ctx, conn, r.cfg.Slot, SlotCheck{Saved: max(r.saved, r.sent, r.seen), Streamed: r.streamed, SavedOrigin: r.savedOrigin, Origin: origin})
	if errors.Is(err, ErrNoSlot) {
		return fmt.Errorf("%w (tidemark replicate creates it at start)", err)
	}
	if err != nil {
		return err
	}
	r.seen = max(r.seen, slot.ConfirmedLSN)
	if origin == "" || origin == r.savedOrigin {
		return nil
	}
	if r.savedOrigin != "" {
		r.log.Info("the server changed, and the slot was synchronized from the previous one (a failover slot): resuming",
			"slot", r.cfg.Slot, "was", r.savedOrigin, "now", origin, "confirmed", slot.ConfirmedLSN)
	}
	if o, ok := r.cfg.Checkpoints.(Origins); ok {
		if err := o.SaveOrigin(ctx, r.cfg.Slot, origin); err != nil {
			return fmt.Errorf("save checkpoint origin: %w", err)
		}
	}
	r.savedOrigin = origin
	return nil
}

// resync replaces the lost slot through OnSlotLost and moves the replicator to the new slot's
// start: the saved checkpoint and the origin are those of the new slot from now on.
func (r *Replicator) resync(ctx context.Context, lost *SlotLostError) error {
	lsn, err := r.cfg.OnSlotLost(ctx, lost)
	if err != nil {
		return err
	}
	r.resyncs.Inc()
	r.flushed.Store(uint64(lsn))
	r.confirmed.Set(float64(lsn))
	r.saved, r.sent, r.seen, r.savedOrigin = lsn, lsn, lsn, ""
	r.unconfirmedSince.Store(0)
	r.log.Warn("resync: streaming from a new slot while every supplier is snapshotted",
		"slot", r.cfg.Slot, "from", lsn, "missing_from", lost.MissingFrom, "reason", lost.Reason)
	return nil
}
