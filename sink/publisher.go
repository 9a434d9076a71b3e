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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/replication"
)

// The publish expectations that keep the stream gap-free and in order (nats-server checks
// them before it stores a message, after its duplicate check).
const (
	headerExpectedLastMsgID = "Nats-Expected-Last-Msg-Id"
	headerExpectedLastSeq   = "Nats-Expected-Last-Sequence"
)

// JetStream's error codes for an unmet publish expectation.
const (
	errCodeWrongLastMsgID    jetstream.ErrorCode = 10070
	errCodeWrongLastSequence jetstream.ErrorCode = 10071
)

// Options tunes a Publisher; [DefaultOptions] are its defaults.
type Options struct {
	// Stream is the stream the subjects belong to, read by Resume; default PRODUCTS.
	Stream string
	// Format is the event layout; default native.
	Format event.Format
	// MaxInFlight bounds the messages published and not yet acknowledged; default 4096.
	MaxInFlight int
	// AckTimeout fails a publish not acknowledged in time; default 10s.
	AckTimeout time.Duration
	// MaxScan bounds how many messages Resume reads back from the end of the stream looking
	// for the last one of its slot; default 100000.
	MaxScan int
}

// Publisher publishes changes to JetStream asynchronously with a bounded number in flight,
// and keeps what the stream holds of its slot gap-free and in commit order: every message
// expects the one before it to be the stream's last (Nats-Expected-Last-Msg-Id), so when
// one is not stored none after it is either, and a replay starting after the last one stored
// ([Publisher.Resume]) neither skips nor repeats a change.
//
// The same chain lets one acknowledgement stand for a run of messages: a message stored
// proves that every one before it was stored, in order. So only the last message of a run
// asks for an ack (the run ends every [ackEvery] messages, at every Flush and Resume, and
// whenever nothing more is waiting to be published); the others are published without a
// reply subject, which spares the server an ack and the client a future per message. It
// implements replication.Publisher. Close stops it.
type Publisher struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	stream   string
	format   event.Format
	timeout  time.Duration
	maxScan  int
	log      *slog.Logger
	sizeHint atomic.Int64 // bytes to allocate for the next event

	slots chan struct{} // one token per message queued or in flight
	out   chan outgoing // messages and markers for the pump, in publish order
	done  chan struct{}

	mu  sync.Mutex
	err error // the session's first failure: returned until the next Resume

	inFlight  prometheus.Gauge
	latency   prometheus.Histogram
	failures  prometheus.Counter
	dups      prometheus.Counter
	reanchors prometheus.Counter
}

var _ replication.Publisher = (*Publisher)(nil)

// outgoing is a message for the pump, or a marker (flush or resume) answered once every
// message before it is settled.
type outgoing struct {
	msg      *nats.Msg
	id       string
	pos      event.Position
	commitTS time.Time
	flush    chan error
	resume   *resumeRequest
}

type resumeRequest struct {
	ctx   context.Context
	slot  string
	reply chan resumeReply
}

type resumeReply struct {
	pos event.Position
	err error
}

// inflight is a message handed to nats.go whose storing has not been confirmed yet.
type inflight struct {
	msg      *nats.Msg
	id       string
	pos      event.Position
	commitTS time.Time
}

// run is a run of published messages settled by one ack, its last message's.
type run struct {
	msgs []inflight
	fut  jetstream.PubAckFuture
}

// ackEvery bounds a run: one ack per this many messages at the most, and at least four runs
// fit in MaxInFlight so that publishing never waits for a whole window's ack. Larger runs
// save little more (the ack is then a small share of a message's cost).
const ackEvery = 256

// idleAck is how long the pump waits for another message before the one it holds goes out
// with an ack request, ending the run: short enough to add nothing noticeable to a change's
// latency, long enough that a steady stream of changes rarely ends a run early.
const idleAck = 200 * time.Microsecond

// NewPublisher starts a publisher on nc. The caller closes it, then nc.
func NewPublisher(nc *nats.Conn, opts Options, log *slog.Logger, reg prometheus.Registerer) (*Publisher, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
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
		nc: nc, js: js, stream: opts.Stream, format: opts.Format, timeout: opts.AckTimeout, maxScan: opts.MaxScan, log: log,
		slots: make(chan struct{}, opts.MaxInFlight),
		out:   make(chan outgoing, opts.MaxInFlight+64),
		done:  make(chan struct{}),
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
		reanchors: f.NewCounter(prometheus.CounterOpts{
			Name: "tidemark_publish_foreign_total",
			Help: "Times messages not published by this replicator were found stored in the stream between its own, and publishing went on after them.",
		}),
	}
	go s.pump()
	return s, nil
}

// Resume settles every message published before it, forgets the failure of the previous
// session and returns the position of the last change of slot the stream holds (the zero
// Position when it holds none). The next message published expects the stream to end where
// Resume found it. When Resume fails, Publish and Flush fail until a Resume succeeds.
func (s *Publisher) Resume(ctx context.Context, slot string) (event.Position, error) {
	req := &resumeRequest{ctx: ctx, slot: slot, reply: make(chan resumeReply, 1)}
	select {
	case s.out <- outgoing{resume: req}:
	case <-ctx.Done():
		return event.Position{}, ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r.pos, r.err
	case <-ctx.Done():
		return event.Position{}, ctx.Err()
	}
}

// Publish sends c asynchronously, waiting for room when MaxInFlight messages await their
// ack. Once a message has failed it returns that failure until the next Resume.
func (s *Publisher) Publish(ctx context.Context, c *event.Change) error {
	if err := s.failure(); err != nil {
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
	s.out <- outgoing{msg: msg, id: id, pos: c.Position(), commitTS: c.Source.CommitTS}
	return nil
}

// Flush waits until every message published before it is acknowledged. It returns the
// session's first failure, and keeps returning it until the next Resume: nothing published
// after a lost message may be confirmed.
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

// Close stops the publisher after the acks of what was published are settled. Publish,
// Flush and Resume must not be called after it.
func (s *Publisher) Close() {
	close(s.out)
	<-s.done
}

func (s *Publisher) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// fail records the session's first failure.
func (s *Publisher) fail(err error) {
	s.failures.Inc()
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *Publisher) release() {
	<-s.slots
	s.inFlight.Dec()
}

// pump is the one goroutine that hands messages to nats.go and checks their acks, in publish
// order. Owning both lets it stop publishing the moment an ack shows that the stream no
// longer ends with this publisher's last message, and publish the rest again in order.
func (s *Publisher) pump() {
	defer close(s.done)
	p := &pumpState{s: s, runMax: max(1, min(ackEvery, cap(s.slots)/4))}
	for {
		if p.marker != nil && len(p.queue) == 0 {
			p.answer()
		}
		// A marker waits for the queue to drain: nothing after it is read before it is answered.
		in := s.out
		if p.marker != nil {
			in = nil
		}
		if p.holding {
			// A marker is never waiting here: taking one sends the held message first.
			if p.whileHolding(in) {
				return
			}
			continue
		}
		if p.await(in) {
			return
		}
	}
}

// await handles whichever comes first: the oldest run's ack, if a run is waiting, or the next
// message from in (nil: none is read). It reports whether in was closed; everything published
// is settled then.
func (p *pumpState) await(in <-chan outgoing) (closed bool) {
	okc, errc := p.headAck()
	select {
	case ack := <-okc:
		p.stored(ack)
	case err := <-errc:
		p.failed(err)
	case o, ok := <-in:
		if !ok {
			p.settleAll()
			return true
		}
		p.take(o)
	}
	return false
}

// headAck returns the oldest run's ack channels, nil ones (never ready) when no run waits.
func (p *pumpState) headAck() (<-chan *jetstream.PubAck, <-chan error) {
	if len(p.queue) == 0 {
		return nil, nil
	}
	return p.queue[0].fut.Ok(), p.queue[0].fut.Err()
}

// whileHolding handles what comes next while a message is held: another message (the held
// one then goes out without an ack request, unless the run is long enough), the oldest run's
// ack, or nothing for idleAck (the held one then goes out asking for an ack, ending the run).
// It reports whether the publisher is closed.
func (p *pumpState) whileHolding(in <-chan outgoing) (closed bool) {
	okc, errc := p.headAck()
	select {
	case o, ok := <-in:
		return p.handle(o, ok)
	case ack := <-okc:
		p.stored(ack)
		return false
	case err := <-errc:
		p.failed(err)
		return false
	default:
	}
	if p.idle == nil {
		p.idle = time.NewTimer(idleAck)
	} else {
		p.idle.Reset(idleAck)
	}
	defer p.idle.Stop()
	select {
	case o, ok := <-in:
		return p.handle(o, ok)
	case ack := <-okc:
		p.stored(ack)
	case err := <-errc:
		p.failed(err)
	case <-p.idle.C:
		p.send(true)
	}
	return false
}

// handle takes o, or, when the publisher is closed (ok false), settles everything and
// reports it.
func (p *pumpState) handle(o outgoing, ok bool) (closed bool) {
	if !ok {
		p.send(true)
		p.settleAll()
		return true
	}
	p.take(o)
	return false
}

// settleAll waits for every published message to be settled: the pump is closing.
func (p *pumpState) settleAll() {
	for len(p.queue) > 0 {
		p.await(nil)
	}
}

// pumpState is owned by the pump goroutine.
type pumpState struct {
	s       *Publisher
	queue   []run      // published, ack not checked yet, in publish order
	open    []inflight // published without an ack request since the last run ended
	held    outgoing   // taken, not published yet (when holding): whether it asks for an ack depends on what follows
	holding bool
	runMax  int       // messages a run may hold
	marker  *outgoing // a flush or resume waiting for the queue to drain
	idle    *time.Timer

	// lastIDHdr is the Nats-Msg-Id header value of the last message handed to nats.go: the
	// next one expects it to be the stream's last (the slice is shared, not copied). Nil until
	// Resume has read the stream.
	lastIDHdr []string
	// anchor, when set, is the stream's last sequence as Resume or a re-anchor found it: the
	// next message expects that instead (the stream may end with a message not ours).
	anchor     uint64
	anchored   bool
	slot       string         // whose changes these are, as Resume was told
	skip       event.Position // changes up to here are in the stream already: not published
	discarded  int            // messages of this session that failed (logged at Resume)
	foreignRun int            // re-anchors in a row without a message stored, for the backoff
}

// take handles what Publish, Flush or Resume sent.
func (p *pumpState) take(o outgoing) {
	s := p.s
	if o.msg == nil {
		// What the marker waits for must end with an ack.
		p.send(true)
		p.marker = &o
		return
	}
	if s.failure() != nil {
		// The session has lost a message: nothing after it may be stored before it, and the
		// next session replays from the stream's last message anyway.
		s.release()
		p.discarded++
		return
	}
	if o.pos.Compare(p.skip) <= 0 {
		// Stored already, by a late message of an earlier session (see reanchor).
		s.release()
		return
	}
	if p.holding {
		p.send(len(p.open)+1 >= p.runMax)
	}
	p.held, p.holding = o, true
	if len(p.open)+1 >= p.runMax {
		// It ends its run whatever follows: holding it would only delay it by idleAck (and
		// the timer's slack), which with a window of one message is every message.
		p.send(true)
	}
}

// send publishes the held message, asking for an ack when ack is set (which ends the run).
func (p *pumpState) send(ack bool) {
	if !p.holding {
		return
	}
	o := p.held
	p.held, p.holding = outgoing{}, false
	s := p.s
	if s.failure() != nil {
		s.release()
		p.discarded++
		p.dropOpen()
		return
	}
	if o.pos.Compare(p.skip) <= 0 {
		// Taken before a re-anchor found it stored already.
		s.release()
		return
	}
	p.expect(o.msg)
	var fut jetstream.PubAckFuture
	var err error
	if ack {
		fut, err = s.js.PublishMsgAsync(o.msg)
	} else {
		err = s.nc.PublishMsg(o.msg)
	}
	if err != nil {
		s.release()
		p.discarded++
		p.dropOpen()
		s.fail(fmt.Errorf("publish %s (msg id %s): %w", o.msg.Subject, o.id, err))
		return
	}
	p.lastIDHdr = o.msg.Header[jetstream.MsgIDHeader]
	p.open = append(p.open, inflight{msg: o.msg, id: o.id, pos: o.pos, commitTS: o.commitTS})
	if ack {
		p.queue = append(p.queue, run{msgs: p.open, fut: fut})
		p.open = nil
	}
}

// dropOpen gives up the messages published without an ack request since the last run ended:
// the session has failed, and whether they were stored is for the next Resume to read.
func (p *pumpState) dropOpen() {
	for range p.open {
		p.s.release()
		p.discarded++
	}
	p.open = nil
}

// expect sets msg's publish expectation: the stream's last message is the one published
// before it, or, right after Resume or a re-anchor, the stream ends at the sequence found.
func (p *pumpState) expect(msg *nats.Msg) {
	delete(msg.Header, headerExpectedLastSeq)
	delete(msg.Header, headerExpectedLastMsgID)
	switch {
	case p.anchored:
		msg.Header[headerExpectedLastSeq] = []string{strconv.FormatUint(p.anchor, 10)}
		p.anchored = false
	case p.lastIDHdr != nil:
		msg.Header[headerExpectedLastMsgID] = p.lastIDHdr
	}
}

func (p *pumpState) pop() run {
	head := p.queue[0]
	p.queue[0] = run{}
	p.queue = p.queue[1:]
	if len(p.queue) == 0 {
		p.queue = p.queue[:0:0]
	}
	return head
}

// stored settles the oldest run: its last message is stored, so every one before it is.
func (p *pumpState) stored(ack *jetstream.PubAck) {
	s := p.s
	head := p.pop()
	p.foreignRun = 0
	if ack != nil && ack.Duplicate {
		s.dups.Inc()
	}
	now := time.Now()
	for _, m := range head.msgs {
		s.release()
		s.latency.Observe(now.Sub(m.commitTS).Seconds())
	}
}

// failed handles the oldest run's failure. A broken expectation with nothing lost before it
// means something not ours was stored after our last message, or a message of the run was
// not stored: publish everything not in the stream again behind what is. Any other failure
// ends the session's publishing.
func (p *pumpState) failed(err error) {
	s := p.s
	var apiErr *jetstream.APIError
	drop := 1 // runs given up
	if s.failure() == nil && errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == errCodeWrongLastMsgID || apiErr.ErrorCode == errCodeWrongLastSequence) {
		if rerr := p.reanchor(); rerr == nil {
			return
		} else {
			err = fmt.Errorf("%w (publishing again after it: %w)", err, rerr)
			// The re-anchor has received the later runs' outcomes already, and a future
			// delivers its outcome once: waiting for them again would never end.
			drop = len(p.queue)
		}
	}
	last := p.queue[0].msgs[len(p.queue[0].msgs)-1]
	for range drop {
		for range p.pop().msgs {
			s.release()
			p.discarded++
		}
	}
	s.fail(fmt.Errorf("publish %s (msg id %s): %w", last.msg.Subject, last.id, err))
}

// reanchor is called when the oldest run broke an expectation with nothing lost before it:
// the stream no longer ends where this publisher thought. Either messages of another
// publisher were stored after ours, or one of the run's messages was not stored (a limit, a
// message dropped on the way), or messages of an earlier session of ours, whose acks had
// timed out, were stored late. It settles the rest of the queue (each message expected its
// predecessor, so each run failed or was stored after one of ours of the same id), reads the
// stream back to its last change of the slot, drops what the stream already holds and
// publishes the rest again, in order, each with an ack request, the first expecting the
// stream's current end. The messages published without an ack request since the last run
// ended follow a broken chain too, so none of them can be stored; they are published again
// with the rest.
func (p *pumpState) reanchor() error {
	s := p.s
	for i := 1; i < len(p.queue); i++ {
		select {
		case <-p.queue[i].fut.Ok():
		case <-p.queue[i].fut.Err():
		}
	}
	if p.foreignRun > 0 {
		time.Sleep(min(time.Duration(p.foreignRun)*10*time.Millisecond, time.Second))
	}
	p.foreignRun++
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", s.stream, err)
	}
	hw, err := ReadHighWater(ctx, st, p.slot, s.maxScan)
	if err != nil {
		return err
	}
	var queue []inflight
	for _, r := range p.queue {
		queue = append(queue, r.msgs...)
	}
	queue = append(queue, p.open...)
	p.queue, p.open = make([]run, 0, len(queue)), nil
	held := 0
	for _, m := range queue {
		if hw.Found && m.pos.Compare(hw.Position) <= 0 {
			held++
			s.release()
		}
	}
	queue = queue[held:]
	p.skip = hw.Position
	if held > 0 {
		s.log.Info("the stream already holds changes whose acknowledgements were late or lost; not publishing them again",
			"stream", s.stream, "changes", held, "up_to", hw.Position)
	}
	if hw.Seq < hw.LastSeq {
		s.reanchors.Inc()
		s.log.Warn("messages not published by this replicator were stored in the stream; publishing again after them",
			"stream", s.stream, "after_seq", hw.Seq, "last_seq", hw.LastSeq, "messages", len(queue))
	}
	p.anchor, p.anchored = hw.LastSeq, true
	for i, m := range queue {
		p.expect(m.msg)
		m.msg.Reply = "" // nats.go set it for the first attempt
		fut, err := s.js.PublishMsgAsync(m.msg)
		if err != nil {
			// Those not published again give back their places; the session has failed.
			for range len(queue) - i {
				s.release()
				p.discarded++
			}
			s.fail(fmt.Errorf("publish %s (msg id %s): %w", m.msg.Subject, m.id, err))
			return nil
		}
		p.lastIDHdr = m.msg.Header[jetstream.MsgIDHeader]
		p.queue = append(p.queue, run{msgs: []inflight{m}, fut: fut})
	}
	return nil
}

// answer replies to the waiting marker; the queue is empty.
func (p *pumpState) answer() {
	m := p.marker
	p.marker = nil
	if m.flush != nil {
		m.flush <- p.s.failure()
		return
	}
	pos, err := p.resume(m.resume)
	m.resume.reply <- resumeReply{pos: pos, err: err}
}

// resume starts a new session: the old one's failure is forgotten (its lost messages are
// replayed), and the stream is read back to its last message of slot. When the stream cannot
// be read, the session fails instead: where the next message belongs is unknown, so nothing
// is published until a Resume succeeds.
func (p *pumpState) resume(req *resumeRequest) (event.Position, error) {
	s := p.s
	hw, err := p.readStream(req.ctx, req.slot)
	if err != nil {
		s.mu.Lock()
		if s.err == nil {
			s.err = fmt.Errorf("resume: %w", err)
		}
		s.mu.Unlock()
		return event.Position{}, err
	}
	if err := s.failure(); err != nil || p.discarded > 0 {
		s.log.Info("the previous session's unacknowledged changes are published again", "messages", p.discarded, "err", err)
	}
	s.mu.Lock()
	s.err = nil
	s.mu.Unlock()
	if hw.Scanned >= s.maxScan && !hw.Found {
		s.log.Warn("no message of this slot among the stream's last messages; publishing from the confirmed LSN, and only the duplicate window drops what the stream already holds",
			"stream", s.stream, "slot", req.slot, "scanned", hw.Scanned)
	}
	p.discarded, p.lastIDHdr, p.slot = 0, nil, req.slot
	p.anchor, p.anchored, p.skip = hw.LastSeq, true, hw.Position
	return hw.Position, nil
}

// readStream reads how far the stream holds slot's changes.
func (p *pumpState) readStream(ctx context.Context, slot string) (HighWater, error) {
	s := p.s
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return HighWater{}, fmt.Errorf("look up stream %s: %w", s.stream, err)
	}
	return ReadHighWater(ctx, st, slot, s.maxScan)
}
