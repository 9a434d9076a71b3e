// Package sink publishes replication changes to NATS JetStream: it sets up the PRODUCTS
// stream and the checkpoint bucket, names subjects and message ids, and publishes
// asynchronously with a bounded number of messages awaiting acknowledgement.
package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/replication"
)

// Names shared with the other parts of tidemark.
const (
	// Stream is the stream of product changes.
	Stream = "PRODUCTS"
	// SubjectPrefix starts every subject of the stream: products.<supplier_id>.<op>.
	SubjectPrefix = "products"
	// TruncateSubject carries truncates, which have no supplier.
	TruncateSubject = "products.all.truncate"
	// CheckpointBucket is the KV bucket of saved checkpoints (key = slot, value = LSN text).
	CheckpointBucket = "tidemark_checkpoints"
)

// StreamConfig is the PRODUCTS stream's setup.
type StreamConfig struct {
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped; default 2m.
	Duplicates time.Duration
	// Replicas is the number of copies in a cluster; default 1.
	Replicas int
}

// EnsureStream creates the PRODUCTS stream, or updates it to cfg. It is idempotent.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (jetstream.Stream, error) {
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = 2 * time.Minute
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Stream,
		Description: "Row changes of the products table, one message per change (tidemark).",
		Subjects:    []string{SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  cfg.Duplicates,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s: %w", Stream, err)
	}
	return s, nil
}

// Subject is the subject of change c: products.<supplier_id>.<op>, or products.all.truncate.
func Subject(c *event.Change) string {
	return string(AppendSubject(nil, c))
}

// AppendSubject appends c's subject to dst.
func AppendSubject(dst []byte, c *event.Change) []byte {
	if c.Op == event.OpTruncate {
		return append(dst, TruncateSubject...)
	}
	dst = append(dst, SubjectPrefix+"."...)
	dst = strconv.AppendInt(dst, c.Key.SupplierID, 10)
	dst = append(dst, '.')
	return append(dst, c.Op...)
}

// MsgID is c's Nats-Msg-Id, <commit_lsn>:<seq> (16/B374D848:42): the same every time the
// change is replayed from the WAL, so JetStream drops the repeat inside its duplicate window.
func MsgID(c *event.Change) string { return string(AppendMsgID(nil, c)) }

// AppendMsgID appends c's message id to dst.
func AppendMsgID(dst []byte, c *event.Change) []byte {
	dst = c.Source.CommitLSN.AppendTo(dst)
	dst = append(dst, ':')
	return strconv.AppendInt(dst, int64(c.Source.Seq), 10)
}

// Options tunes a JetStream publisher.
type Options struct {
	// Format is the event layout; default native.
	Format event.Format
	// MaxInFlight bounds the messages published and not yet acknowledged; default 4096.
	MaxInFlight int
	// AckTimeout fails a publish not acknowledged in time; default 10s.
	AckTimeout time.Duration
}

// JetStream publishes changes asynchronously with a bounded number in flight. It implements
// replication.Publisher. Close stops it.
type JetStream struct {
	js     jetstream.JetStream
	format event.Format
	log    *slog.Logger

	slots   chan struct{} // one token per message queued or in flight
	out     chan outgoing // messages for the publishing goroutine, and flush markers
	pending chan pending  // acks to check, in publish order, and flush markers

	mu  sync.Mutex
	err error // first failure since the last Flush

	done chan struct{}

	sizeHint atomic.Int64 // bytes to allocate for the next event

	inFlight prometheus.Gauge
	latency  prometheus.Histogram
	failures prometheus.Counter
	dups     prometheus.Counter
}

var _ replication.Publisher = (*JetStream)(nil)

type outgoing struct {
	msg      *nats.Msg
	commitTS time.Time
	flush    chan error // set for a Flush marker
}

type pending struct {
	fut      jetstream.PubAckFuture
	commitTS time.Time
	flush    chan error // set for a Flush marker
}

// NewJetStream starts a publisher on nc. The caller closes it, then nc.
func NewJetStream(nc *nats.Conn, opts Options, log *slog.Logger, reg prometheus.Registerer) (*JetStream, error) {
	if opts.Format == "" {
		opts.Format = event.FormatNative
	}
	if opts.Format != event.FormatNative && opts.Format != event.FormatDebezium {
		return nil, fmt.Errorf("event format %q: want native or debezium", opts.Format)
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 4096
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = 10 * time.Second
	}
	// nats.go's own limit stays above ours so it never stalls and fails a publish.
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(2*opts.MaxInFlight+16),
		jetstream.WithPublishAsyncTimeout(opts.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	f := promauto.With(reg)
	s := &JetStream{
		js: js, format: opts.Format, log: log,
		slots:   make(chan struct{}, opts.MaxInFlight),
		out:     make(chan outgoing, opts.MaxInFlight+64),
		pending: make(chan pending, opts.MaxInFlight+64),
		done:    make(chan struct{}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "tidemark_publish_in_flight", Help: "Messages published to JetStream and not yet acknowledged.",
		}),
		latency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidemark_commit_to_ack_seconds",
			Help:    "Time from a change's commit in PostgreSQL to JetStream's acknowledgement of its message.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		failures: f.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_publish_failures_total", Help: "Publishes that failed or were not acknowledged in time.",
		}),
		dups: f.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_publish_duplicates_total", Help: "Publishes JetStream dropped as duplicates (replays after a restart).",
		}),
	}
	go s.publish()
	go s.collect()
	return s, nil
}

// JetStream is the jetstream handle the publisher uses (for stream and KV setup).
func (s *JetStream) JetStream() jetstream.JetStream { return s.js }

// publish hands messages to nats.go in order on a goroutine of its own, so the replication
// loop decodes the next change while this one is sent.
func (s *JetStream) publish() {
	defer close(s.pending)
	for o := range s.out {
		if o.flush != nil {
			s.pending <- pending{flush: o.flush}
			continue
		}
		fut, err := s.js.PublishMsgAsync(o.msg)
		if err != nil {
			s.release()
			s.fail(fmt.Errorf("publish %s (msg id %s): %w", o.msg.Subject, o.msg.Header.Get(jetstream.MsgIDHeader), err))
			continue
		}
		s.pending <- pending{fut: fut, commitTS: o.commitTS}
	}
}

func (s *JetStream) release() {
	<-s.slots
	s.inFlight.Dec()
}

// fail records the first failure since the last Flush.
func (s *JetStream) fail(err error) {
	s.failures.Inc()
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// collect checks every ack in publish order and answers Flush markers once every earlier
// message is settled.
func (s *JetStream) collect() {
	defer close(s.done)
	for p := range s.pending {
		if p.flush != nil {
			s.mu.Lock()
			err := s.err
			s.err = nil
			s.mu.Unlock()
			p.flush <- err
			continue
		}
		var err error
		select {
		case ack := <-p.fut.Ok():
			if ack != nil && ack.Duplicate {
				s.dups.Inc()
			}
			s.latency.Observe(time.Since(p.commitTS).Seconds())
		case err = <-p.fut.Err():
		}
		s.release()
		if err != nil {
			s.fail(fmt.Errorf("publish %s (msg id %s): %w", p.fut.Msg().Subject, p.fut.Msg().Header.Get(jetstream.MsgIDHeader), err))
		}
	}
}

// Publish sends c asynchronously, waiting for room when MaxInFlight messages await their
// ack. After a failed ack it returns that failure until Flush reports it.
func (s *JetStream) Publish(ctx context.Context, c *event.Change) error {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.inFlight.Inc()
	// Sized from the last event, so that a typical one is encoded without growing its buffer
	// (a copy per event).
	var data []byte
	if s.format == event.FormatDebezium {
		data = c.AppendDebezium(make([]byte, 0, s.sizeHint.Load()))
	} else {
		data = c.AppendJSON(make([]byte, 0, s.sizeHint.Load()))
	}
	s.sizeHint.Store(int64(max(512, len(data)+len(data)/8)))
	// The header set directly is what jetstream.WithMsgID sets, without the option's
	// allocations; subject and id are built on the stack.
	var buf [64]byte
	subject := string(AppendSubject(buf[:0], c))
	id := string(AppendMsgID(buf[:0], c))
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{id}}}
	s.out <- outgoing{msg: msg, commitTS: c.Source.CommitTS}
	return nil
}

// Flush waits until every message published before it is acknowledged and returns the
// first failure since the previous Flush.
func (s *JetStream) Flush(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case s.out <- outgoing{flush: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the publisher after the acks of what was published are settled. Publish and
// Flush must not be called after it.
func (s *JetStream) Close() {
	close(s.out)
	<-s.done
}

// Checkpoints keeps slots' confirmed LSNs in the KV bucket tidemark_checkpoints. It
// implements replication.Checkpoints.
type Checkpoints struct {
	kv jetstream.KeyValue
}

var _ replication.Checkpoints = (*Checkpoints)(nil)

// EnsureCheckpoints creates (or opens) the checkpoint bucket.
func EnsureCheckpoints(ctx context.Context, js jetstream.JetStream, replicas int) (*Checkpoints, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      CheckpointBucket,
		Description: "tidemark replication checkpoints: key = slot, value = confirmed LSN",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		History:     1,
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint bucket %s: %w", CheckpointBucket, err)
	}
	return &Checkpoints{kv: kv}, nil
}

// OpenCheckpoints opens the checkpoint bucket; jetstream.ErrBucketNotFound when missing.
func OpenCheckpoints(ctx context.Context, js jetstream.JetStream) (*Checkpoints, error) {
	kv, err := js.KeyValue(ctx, CheckpointBucket)
	if err != nil {
		return nil, fmt.Errorf("checkpoint bucket %s: %w", CheckpointBucket, err)
	}
	return &Checkpoints{kv: kv}, nil
}

// Load returns slot's saved LSN, 0 when none is saved.
func (c *Checkpoints) Load(ctx context.Context, slot string) (pglogrepl.LSN, error) {
	e, err := c.kv.Get(ctx, slot)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint of %s: %w", slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(string(e.Value()))
	if err != nil {
		return 0, fmt.Errorf("checkpoint of %s holds %q: %w", slot, e.Value(), err)
	}
	return lsn, nil
}

// Save stores lsn as slot's checkpoint.
func (c *Checkpoints) Save(ctx context.Context, slot string, lsn pglogrepl.LSN) error {
	if _, err := c.kv.Put(ctx, slot, []byte(lsn.String())); err != nil {
		return fmt.Errorf("save checkpoint of %s: %w", slot, err)
	}
	return nil
}
