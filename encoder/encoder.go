package encoder

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/setting"
	"golang.org/x/sync/errgroup"
)

// Shared names; the change stream is [event.Stream].
const (
	// DLQStreamName is the dead-letter stream.
	DLQStreamName = event.Stream + "_DLQ"
	// DLQSubjectPrefix starts the subjects of the dead-letter stream: a dead-lettered
	// products.42.update is kept on products_dlq.42.update.
	DLQSubjectPrefix = event.SubjectPrefix + "_dlq"
	// DLQSubjects are the subjects of the dead-letter stream.
	DLQSubjects = DLQSubjectPrefix + ".>"
	// DefaultConsumer is the encoders' durable consumer.
	DefaultConsumer = "encoders"
)

// Headers of a dead-lettered message.
const (
	HeaderError      = "Tidemark-Error"
	HeaderSubject    = "Tidemark-Subject"
	HeaderStreamSeq  = "Tidemark-Stream-Seq"
	HeaderConsumer   = "Tidemark-Consumer"
	HeaderDeliveries = "Tidemark-Deliveries"
)

// Config is how an [Encoder] consumes.
type Config struct {
	Stream   string // the change stream; default PRODUCTS
	DLQ      string // the dead-letter stream, created when missing; default PRODUCTS_DLQ
	Consumer string // durable consumer name; default "encoders"
	Workers  int    // fetching goroutines in this process; default 2
	Batch    int    // messages per fetch; default 1000
	// BatchWait is the longest a fetch waits to fill a batch; default 500ms.
	BatchWait time.Duration
	// AckWait is how long the server waits for an ack before redelivering; default 30s.
	// Slow batches send InProgress well before it runs out.
	AckWait time.Duration
	// MaxDeliver is the delivery after which a message that still fails goes to the
	// dead-letter stream. The consumer itself redelivers without limit, so a message whose
	// copy to the dead-letter stream fails is retried later, never dropped. Default 8.
	MaxDeliver int
	// MaxAckPending bounds messages delivered and not yet acked, over all workers and
	// processes; default 20000.
	MaxAckPending int
	// NakDelay is the first redelivery delay after a failed batch, doubling per delivery up to
	// a minute; default 1s.
	NakDelay time.Duration
	// ExitIdle, when > 0, stops Run once the consumer has had nothing pending for this long.
	ExitIdle time.Duration
	// ShutdownGrace bounds how long the batch in hand may take to finish after ctx is done;
	// default 30s.
	ShutdownGrace time.Duration
	// StreamWait is how often to look again for a stream that does not exist yet; default 1s.
	StreamWait time.Duration
}

// DefaultConfig is the configuration an [Encoder] runs with where a field is left zero, and
// the defaults of tidemark encode's flags.
func DefaultConfig() Config {
	return Config{
		Stream:        event.Stream,
		DLQ:           DLQStreamName,
		Consumer:      DefaultConsumer,
		Workers:       2,
		Batch:         1000,
		BatchWait:     500 * time.Millisecond,
		AckWait:       30 * time.Second,
		MaxDeliver:    8,
		MaxAckPending: 20000,
		NakDelay:      time.Second,
		ShutdownGrace: 30 * time.Second,
		StreamWait:    time.Second,
	}
}

// defaults fills the zero fields of c from [DefaultConfig]; a negative one is an error that
// names it.
func (c *Config) defaults() error {
	d := DefaultConfig()
	c.Stream = cmp.Or(c.Stream, d.Stream)
	c.DLQ = cmp.Or(c.DLQ, d.DLQ)
	c.Consumer = cmp.Or(c.Consumer, d.Consumer)
	var errs []error
	setting.Default(&errs, "--workers", &c.Workers, d.Workers)
	setting.Default(&errs, "--batch", &c.Batch, d.Batch)
	setting.Default(&errs, "--batch-wait", &c.BatchWait, d.BatchWait)
	setting.Default(&errs, "--ack-wait", &c.AckWait, d.AckWait)
	setting.Default(&errs, "--max-deliver", &c.MaxDeliver, d.MaxDeliver)
	setting.Default(&errs, "--max-ack-pending", &c.MaxAckPending, d.MaxAckPending)
	setting.Default(&errs, "Config.NakDelay", &c.NakDelay, d.NakDelay)
	setting.Default(&errs, "Config.ShutdownGrace", &c.ShutdownGrace, d.ShutdownGrace)
	setting.Default(&errs, "Config.StreamWait", &c.StreamWait, d.StreamWait)
	if c.ExitIdle < 0 {
		errs = append(errs, fmt.Errorf("--exit-idle %s is negative", c.ExitIdle))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("encoder: %w", err)
	}
	if c.MaxDeliver < 2 {
		return errors.New("encoder: --max-deliver must be at least 2")
	}
	return nil
}

// Encoder consumes change events and writes vectors.
type Encoder struct {
	cfg   Config
	js    jetstream.JetStream
	store *Store
	emb   Embedder
	model string
	log   *slog.Logger
	m     *metrics

	ready    atomic.Bool
	lastWork atomic.Int64 // unix nanos of the last batch that held messages
	busy     atomic.Int32 // batches in hand
	cons     jetstream.Consumer
	dlqMu    sync.Mutex
	dlqReady bool
}

// New returns an encoder that writes the vectors of emb to store; Run starts it.
func New(cfg Config, js jetstream.JetStream, store *Store, emb Embedder, log *slog.Logger, reg prometheus.Registerer) (*Encoder, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	e := &Encoder{cfg: cfg, js: js, store: store, emb: emb, model: emb.Model(), log: log, m: newMetrics(reg)}
	return e, nil
}

// Ready is nil once the consumer is bound, for /readyz.
func (e *Encoder) Ready() error {
	if !e.ready.Load() {
		return errors.New("waiting for the stream and consumer")
	}
	return nil
}

// errIdle stops the errgroup when --exit-idle fires.
var errIdle = errors.New("idle")

// Run waits for the stream, binds the durable consumer and runs the workers until ctx is done
// (each finishes the batch in hand first) or, with ExitIdle, until nothing is left to do.
// Shutdown by ctx is a clean exit: it returns nil.
func (e *Encoder) Run(ctx context.Context) error {
	stream, err := e.waitStream(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	backoff := make([]time.Duration, 0, e.cfg.MaxDeliver)
	for i, d := 0, e.cfg.AckWait; i < min(e.cfg.MaxDeliver, 6); i, d = i+1, d*2 {
		backoff = append(backoff, d)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       e.cfg.Consumer,
		Description:   "tidemark encoders: embed product changes",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       e.cfg.AckWait,
		BackOff:       backoff,
		// In effect unlimited: the encoder dead-letters at cfg.MaxDeliver itself, and a
		// server-side limit would stop delivering a message whose copy to the dead-letter
		// stream failed. Not -1: nats-server before 2.11 refuses -1 alongside BackOff.
		MaxDeliver:    math.MaxInt32,
		MaxAckPending: e.cfg.MaxAckPending,
		MaxWaiting:    max(512, e.cfg.Workers*4),
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("create consumer %s on %s: %w", e.cfg.Consumer, e.cfg.Stream, err)
	}
	e.cons = cons
	e.ready.Store(true)
	e.lastWork.Store(time.Now().UnixNano())
	e.log.Info("encoding", "stream", e.cfg.Stream, "consumer", e.cfg.Consumer, "workers", e.cfg.Workers,
		"batch", e.cfg.Batch, "model", e.model, "pgvector", e.store.vector)

	g, gctx := errgroup.WithContext(ctx)
	for i := range e.cfg.Workers {
		g.Go(func() error { return e.work(gctx, i) })
	}
	g.Go(func() error { return e.watch(gctx) })
	err = g.Wait()
	if errors.Is(err, errIdle) || (err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

func (e *Encoder) waitStream(ctx context.Context) (jetstream.Stream, error) {
	logged := false
	for {
		s, err := e.js.Stream(ctx, e.cfg.Stream)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, nats.ErrTimeout) &&
			!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return nil, fmt.Errorf("look up stream %s: %w", e.cfg.Stream, err)
		}
		if !logged {
			e.log.Info("waiting for the stream to appear (is tidemark replicate running?)", "stream", e.cfg.Stream, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(e.cfg.StreamWait):
		}
	}
}

// watch refreshes the pending gauges and, with ExitIdle, ends Run when there is nothing left.
func (e *Encoder) watch(ctx context.Context) error {
	every := 5 * time.Second
	if e.cfg.ExitIdle > 0 {
		every = min(every, max(50*time.Millisecond, e.cfg.ExitIdle/4))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := e.cons.Info(ictx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				e.log.Debug("consumer info", "err", err)
			}
			continue
		}
		e.m.pending.Set(float64(info.NumPending))
		e.m.ackPending.Set(float64(info.NumAckPending))
		if e.cfg.ExitIdle > 0 && info.NumPending == 0 && info.NumAckPending == 0 && e.busy.Load() == 0 &&
			time.Since(time.Unix(0, e.lastWork.Load())) >= e.cfg.ExitIdle {
			e.log.Info("nothing left to encode; exiting", "idle", e.cfg.ExitIdle)
			return errIdle
		}
	}
}

// work fetches and processes batches until ctx is done. The batch in hand always finishes
// (with its acks) under a context that outlives ctx by ShutdownGrace.
func (e *Encoder) work(ctx context.Context, id int) error {
	log := e.log.With("worker", id)
	for ctx.Err() == nil {
		batch, err := e.cons.Fetch(e.cfg.Batch, jetstream.FetchMaxWait(e.cfg.BatchWait))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("fetch", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		msgs := make([]jetstream.Msg, 0, e.cfg.Batch)
		for msg := range batch.Messages() {
			msgs = append(msgs, msg)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			log.Warn("fetch", "err", err, "messages", len(msgs))
		}
		if len(msgs) > 0 {
			e.busy.Add(1)
			e.lastWork.Store(time.Now().UnixNano())
			// Shutdown lets the batch in hand finish (and ack) for up to ShutdownGrace.
			pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			stop := context.AfterFunc(ctx, func() { time.AfterFunc(e.cfg.ShutdownGrace, cancel) })
			e.handle(pctx, log, msgs)
			stop()
			cancel()
			e.lastWork.Store(time.Now().UnixNano())
			e.busy.Add(-1)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// handle processes a batch; when it fails as a whole because of one bad input (the database
// or the embedder rejected something), each message is retried alone so the others do not
// share its fate.
func (e *Encoder) handle(ctx context.Context, log *slog.Logger, msgs []jetstream.Msg) {
	e.m.batchSize.Observe(float64(len(msgs)))
	start := time.Now()
	err := e.process(ctx, msgs)
	e.m.batchSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		return
	}
	if len(msgs) > 1 && rejected(err) {
		log.Warn("batch rejected; retrying its messages one by one", "err", err, "messages", len(msgs))
		for _, m := range msgs {
			if err := e.process(ctx, []jetstream.Msg{m}); err != nil {
				e.failed(ctx, log, []jetstream.Msg{m}, err)
			}
		}
		return
	}
	e.failed(ctx, log, msgs, err)
}

// failed naks msgs for a later retry, or dead-letters those on their last delivery.
func (e *Encoder) failed(ctx context.Context, log *slog.Logger, msgs []jetstream.Msg, err error) {
	log.Warn("batch failed; will retry", "err", err, "messages", len(msgs))
	for _, m := range msgs {
		md, merr := m.Metadata()
		if merr == nil && int(md.NumDelivered) >= e.cfg.MaxDeliver {
			derr := e.deadLetter(ctx, m, fmt.Errorf("failed %d deliveries: %w", md.NumDelivered, err))
			if derr == nil {
				continue
			}
			// Not copied, so not terminated: it comes back after the delay and is tried again.
			log.Error("dead-letter failed; the event stays in the stream and is retried", "err", derr, "subject", m.Subject())
		}
		n := uint64(1)
		if merr == nil {
			n = md.NumDelivered
		}
		delay := time.Duration(float64(e.cfg.NakDelay) * math.Pow(2, float64(min(n-1, 10))))
		_ = m.NakWithDelay(min(delay, time.Minute))
	}
}

// deadLetter copies msg to the dead-letter stream with why it failed, then terminates it.
func (e *Encoder) deadLetter(ctx context.Context, msg jetstream.Msg, cause error) error {
	if err := e.ensureDLQ(ctx); err != nil {
		return err
	}
	dm := nats.NewMsg(dlqSubject(msg.Subject()))
	dm.Data = msg.Data()
	for k, v := range msg.Headers() {
		dm.Header[k] = v
	}
	reason := cause.Error()
	dm.Header.Set(HeaderError, reason)
	dm.Header.Set(HeaderSubject, msg.Subject())
	dm.Header.Set(HeaderConsumer, e.cfg.Consumer)
	opts := []jetstream.PublishOpt{}
	if md, err := msg.Metadata(); err == nil {
		seq := strconv.FormatUint(md.Sequence.Stream, 10)
		dm.Header.Set(HeaderStreamSeq, seq)
		dm.Header.Set(HeaderDeliveries, strconv.FormatUint(md.NumDelivered, 10))
		// A crash between the copy and the term redelivers the message: same id, one copy.
		opts = append(opts, jetstream.WithMsgID(md.Stream+"-"+seq))
	} else {
		dm.Header.Del(jetstream.MsgIDHeader)
	}
	if _, err := e.js.PublishMsg(ctx, dm, opts...); err != nil {
		return fmt.Errorf("publish to %s: %w", e.cfg.DLQ, err)
	}
	e.m.events.WithLabelValues("dead_lettered").Inc()
	if len(reason) > 200 {
		reason = reason[:200]
	}
	e.log.Warn("dead-lettered an event", "subject", msg.Subject(), "err", cause)
	if err := msg.TermWithReason(reason); err != nil {
		return fmt.Errorf("term dead-lettered message: %w", err)
	}
	return nil
}

func dlqSubject(subject string) string {
	if rest, ok := strings.CutPrefix(subject, event.SubjectPrefix+"."); ok {
		return DLQSubjectPrefix + "." + rest
	}
	return DLQSubjectPrefix + "." + subject
}

func (e *Encoder) ensureDLQ(ctx context.Context) error {
	e.dlqMu.Lock()
	defer e.dlqMu.Unlock()
	if e.dlqReady {
		return nil
	}
	// A failure is not remembered: the next dead letter tries again.
	if _, err := e.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        e.cfg.DLQ,
		Description: "tidemark: change events the encoders could not process",
		Subjects:    []string{DLQSubjects},
		Storage:     jetstream.FileStorage,
		Duplicates:  10 * time.Minute,
	}); err != nil {
		return fmt.Errorf("create stream %s: %w", e.cfg.DLQ, err)
	}
	e.dlqReady = true
	return nil
}

type metrics struct {
	texts        prometheus.Counter
	events       *prometheus.CounterVec
	batchSize    prometheus.Histogram
	batchSeconds prometheus.Histogram
	embedSeconds prometheus.Histogram
	pending      prometheus.Gauge
	ackPending   prometheus.Gauge
}

// Event results, the values of the result label of tidemark_encoder_events_total.
var results = []string{"embedded", "skipped_unchanged", "coalesced", "deleted", "truncated", "epoch", "gone", "dead_lettered"}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		texts: f.NewCounter(prometheus.CounterOpts{Name: "tidemark_embed_texts_total",
			Help: "Texts sent to the embedder."}),
		events: f.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_encoder_events_total",
			Help: "Change events processed, by result: embedded, skipped_unchanged (text unchanged, no embedding), coalesced (a newer event of the product was in the batch), deleted, truncated, epoch (a snapshot epoch's open or close), gone (the row no longer exists), dead_lettered."},
			[]string{"result"}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{Name: "tidemark_encoder_batch_size",
			Help: "Messages per fetched batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		batchSeconds: f.NewHistogram(prometheus.HistogramOpts{Name: "tidemark_encoder_batch_seconds",
			Help: "Time to process a batch, from decode to acks.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}),
		embedSeconds: f.NewHistogram(prometheus.HistogramOpts{Name: "tidemark_embed_seconds",
			Help: "Latency of one Embed call (a batch of texts).", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}),
		pending: f.NewGauge(prometheus.GaugeOpts{Name: "tidemark_encoder_consumer_pending",
			Help: "Messages in the stream not yet delivered to the encoders' consumer."}),
		ackPending: f.NewGauge(prometheus.GaugeOpts{Name: "tidemark_encoder_consumer_ack_pending",
			Help: "Messages delivered to the encoders and not yet acknowledged."}),
	}
	for _, r := range results {
		m.events.WithLabelValues(r)
	}
	return m
}
