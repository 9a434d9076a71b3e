package sink

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/replication"
)

// Options tunes a Publisher.
type Options struct {
	// Format is the event layout; default native.
	Format event.Format
	// MaxInFlight bounds the messages published and not yet acknowledged; default 4096.
	MaxInFlight int
	// AckTimeout fails a publish not acknowledged in time; default 10s.
	AckTimeout time.Duration
}

// Publisher publishes changes to JetStream asynchronously with a bounded number in flight. It
// implements replication.Publisher. Close stops it.
type Publisher struct {
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

var _ replication.Publisher = (*Publisher)(nil)

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

// NewPublisher starts a publisher on nc. The caller closes it, then nc.
func NewPublisher(nc *nats.Conn, opts Options, log *slog.Logger, reg prometheus.Registerer) (*Publisher, error) {
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
	s := &Publisher{
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

// publish hands messages to nats.go in order on a goroutine of its own, so the replication
// loop decodes the next change while this one is sent.
func (s *Publisher) publish() {
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

func (s *Publisher) release() {
	<-s.slots
	s.inFlight.Dec()
}

// fail records the first failure since the last Flush.
func (s *Publisher) fail(err error) {
	s.failures.Inc()
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// collect checks every ack in publish order and answers Flush markers once every earlier
// message is settled.
func (s *Publisher) collect() {
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
func (s *Publisher) Publish(ctx context.Context, c *event.Change) error {
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
func (s *Publisher) Flush(ctx context.Context) error {
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
func (s *Publisher) Close() {
	close(s.out)
	<-s.done
}
