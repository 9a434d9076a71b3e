package sink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/fakedrop"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
)

func TestSubjectAndMsgID(t *testing.T) {
	c := change(0x16B374D848, 42, 7)
	if got := sink.Subject(c); got != "products.7.insert" {
		t.Errorf("subject %s", got)
	}
	if got := sink.MsgID(c); got != "16/B374D848:42" {
		t.Errorf("msg id %s", got)
	}
	c.Op = event.OpTruncate
	if got := sink.Subject(c); got != sink.TruncateSubject {
		t.Errorf("truncate subject %s", got)
	}
}

// TestEnsureStreamKeepsLimits: on an existing stream EnsureStream sets only its own settings
// (here a new duplicate window); the limits an operator gave the stream stay.
func TestEnsureStreamKeepsLimits(t *testing.T) {
	e := startNATS(t)
	s := e.stream(t, sink.StreamConfig{})
	cfg := s.CachedInfo().Config
	cfg.MaxAge, cfg.MaxBytes, cfg.MaxMsgs, cfg.Discard = 72*time.Hour, 1<<30, 5_000_000, jetstream.DiscardNew
	if _, err := e.js.UpdateStream(e.ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for _, dup := range []time.Duration{5 * time.Minute, 5 * time.Minute} { // an update, then none
		got := e.stream(t, sink.StreamConfig{Duplicates: dup}).CachedInfo().Config
		if got.Duplicates != dup {
			t.Errorf("duplicate window %s, want %s", got.Duplicates, dup)
		}
		if got.MaxAge != cfg.MaxAge || got.MaxBytes != cfg.MaxBytes || got.MaxMsgs != cfg.MaxMsgs || got.Discard != cfg.Discard {
			t.Errorf("limits after EnsureStream: age %s bytes %d msgs %d discard %s, want %s %d %d %s",
				got.MaxAge, got.MaxBytes, got.MaxMsgs, got.Discard, cfg.MaxAge, cfg.MaxBytes, cfg.MaxMsgs, cfg.Discard)
		}
	}
}

// TestPublishDedup: publishing the same changes twice (a replay) stores them once, and
// more changes than MaxInFlight go through the bounded window.
func TestPublishDedup(t *testing.T) {
	e := startNATS(t)
	ctx := e.ctx
	pub := newPublisher(t, e.nc, sink.Options{MaxInFlight: 16})
	s := e.stream(t, sink.StreamConfig{})
	if _, err := sink.EnsureStream(ctx, e.js, sink.StreamConfig{Duplicates: time.Minute}); err != nil {
		t.Fatalf("second EnsureStream: %v", err)
	}
	for round := 0; round < 2; round++ {
		for i := 0; i < 500; i++ {
			if err := pub.Publish(ctx, change(0x1000, i, int64(1+i%3))); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 500 {
		t.Errorf("stream holds %d messages, want 500", info.State.Msgs)
	}
	if info.Config.Duplicates != time.Minute {
		t.Errorf("duplicate window %s after update", info.Config.Duplicates)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "products.1.insert" || m.Header.Get(jetstream.MsgIDHeader) != "0/1000:0" {
		t.Errorf("first message %s %v", m.Subject, m.Header)
	}
}

// TestFailedAckIsReported: with no stream to store them, publishes fail; Flush reports it,
// and keeps reporting it (Publish refuses more) until Resume starts a new session, after
// which publishing works again.
func TestFailedAckIsReported(t *testing.T) {
	e := startNATS(t)
	ctx := e.ctx
	pub := newPublisher(t, e.nc, sink.Options{MaxInFlight: 8, AckTimeout: time.Second})
	var err error
	for i := 0; i < 50 && err == nil; i++ {
		err = pub.Publish(ctx, change(0x2000, i, 1))
	}
	ferr := pub.Flush(ctx)
	if ferr == nil {
		t.Fatal("Flush succeeded with no stream")
	}
	if err == nil {
		t.Error("Publish kept accepting changes after a failed ack")
	}
	e.stream(t, sink.StreamConfig{})
	if err := pub.Flush(ctx); err == nil {
		t.Fatal("a second Flush forgot the failure before Resume")
	}
	if err := pub.Publish(ctx, change(0x3000, 0, 1)); err == nil {
		t.Fatal("Publish accepted a change after a failure, before Resume")
	}
	if _, err := pub.Resume(ctx, "tidemark"); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, change(0x3000, 0, 1)); err != nil {
		t.Fatalf("publish after Resume: %v", err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTimedOutFlushKeepsTheFailure: a Flush whose caller gave up must not swallow the
// failure it would have reported; the next Flush still reports it.
func TestTimedOutFlushKeepsTheFailure(t *testing.T) {
	e := startNATS(t)
	ctx := e.ctx
	pub := newPublisher(t, e.nc, sink.Options{MaxInFlight: 8, AckTimeout: 300 * time.Millisecond})
	// No stream: every ack fails.
	for i := 0; i < 4; i++ {
		if err := pub.Publish(ctx, change(0x2000, i, 1)); err != nil {
			break
		}
	}
	gone, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	if err := pub.Flush(gone); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with a 1ms deadline: %v, want the deadline", err)
	}
	time.Sleep(time.Second) // the acks fail and the abandoned marker is answered
	if err := pub.Flush(ctx); err == nil {
		t.Fatal("Flush returned nil after a change was lost: the confirmed LSN could move past it")
	}
}

// TestNATSDownTimesOut: while NATS is away acks time out and Flush says so rather than
// hanging; when it is back a new session publishes again.
func TestNATSDownTimesOut(t *testing.T) {
	e := startNATS(t)
	ctx, n := e.ctx, e.n
	pub := newPublisher(t, e.nc, sink.Options{MaxInFlight: 8, AckTimeout: 500 * time.Millisecond})
	e.stream(t, sink.StreamConfig{})
	n.Shutdown()
	for i := 0; i < 4; i++ {
		_ = pub.Publish(ctx, change(0x4000, i, 1))
	}
	if err := pub.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded while NATS was down")
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := pub.Resume(ctx, "tidemark")
		if err == nil {
			err = pub.Publish(ctx, change(0x5000, 0, 1))
		}
		if err == nil {
			err = pub.Flush(ctx)
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing did not recover: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestResumeReadsTheStreamsLastChange: Resume reports the position of the slot's last
// change in the stream, passing over messages others published after it and messages of
// another slot, in both envelopes.
func TestResumeReadsTheStreamsLastChange(t *testing.T) {
	for _, format := range []event.Format{event.FormatNative, event.FormatDebezium} {
		t.Run(string(format), func(t *testing.T) {
			e := startNATS(t)
			ctx, js := e.ctx, e.js
			e.stream(t, sink.StreamConfig{})
			pub := newPublisher(t, e.nc, sink.Options{Format: format})
			if pos, err := pub.Resume(ctx, "tidemark"); err != nil || !pos.IsZero() {
				t.Fatalf("empty stream: %s %v", pos, err)
			}
			publishAll(t, ctx, pub, 0x7000, 0, 10)
			// After it: a message with no id, one with an id that is no position, and a
			// change of another slot.
			if _, err := js.Publish(ctx, "products.1.insert", []byte(`{"op":"insert"}`)); err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, "products.1.insert", []byte(`{}`), jetstream.WithMsgID("backfill-1")); err != nil {
				t.Fatal(err)
			}
			other := change(0x9000, 0, 1)
			other.Source.Slot = "other"
			if _, err := js.Publish(ctx, "products.1.insert", other.AppendJSON(nil), jetstream.WithMsgID(sink.MsgID(other))); err != nil {
				t.Fatal(err)
			}
			resumeAt(t, ctx, pub, event.Position{CommitLSN: 0x7000, Seq: 9})
		})
	}
}

// TestStreamLimitLeavesNoGap: when the stream refuses a message (its limit is reached), no
// later message is stored before it, although dozens were in flight behind it; once the
// limit is raised a new session publishes from the stream's last message on, and the stream
// holds every change once, in order.
func TestStreamLimitLeavesNoGap(t *testing.T) {
	e := startNATS(t)
	ctx, nc, js := e.ctx, e.nc, e.js
	e.stream(t, sink.StreamConfig{})
	limit := func(msgs int64) jetstream.Stream {
		t.Helper()
		st, err := js.Stream(ctx, event.Stream)
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		cfg.MaxMsgs, cfg.Discard = msgs, jetstream.DiscardNew
		st, err = js.UpdateStream(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := limit(100)
	changeAt := func(i int) *event.Change { return change(0x8000, i, int64(1+i%3)) }
	pub := newPublisher(t, nc, sink.Options{MaxInFlight: 256})
	if _, err := pub.Resume(ctx, "tidemark"); err != nil {
		t.Fatal(err)
	}
	const total = 300
	published := 0
	for ; published < total; published++ {
		if err := pub.Publish(ctx, changeAt(published)); err != nil {
			break
		}
	}
	if err := pub.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded although the stream refused messages")
	}
	if published <= 100 {
		t.Fatalf("only %d published before the failure surfaced: nothing was in flight behind the refused one", published)
	}
	storedInOrder(t, ctx, st, 0x8000, 100)
	limit(-1)
	resumeAt(t, ctx, pub, event.Position{CommitLSN: 0x8000, Seq: 99})
	publishEach(t, ctx, pub, 100, total, changeAt)
	storedInOrder(t, ctx, st, 0x8000, total)
}

// TestForeignMessageMidStream: a message someone else publishes into the stream while
// hundreds of ours are in flight does not stop publishing or reorder it: ours all land once,
// in order, after it; the publisher counts what it found.
func TestForeignMessageMidStream(t *testing.T) {
	e := startNATS(t)
	ctx, n, nc := e.ctx, e.n, e.nc
	st := e.stream(t, sink.StreamConfig{})
	reg := prometheus.NewRegistry()
	pub, err := sink.NewPublisher(nc, sink.Options{MaxInFlight: 512}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	if _, err := pub.Resume(ctx, "tidemark"); err != nil {
		t.Fatal(err)
	}
	other := connect(t, n.URL())
	const total = 5000
	for i := 0; i < total; i++ {
		if i%1000 == 500 {
			// From another connection, so it overtakes what ours has in flight.
			if err := other.Publish("products.9.insert", []byte(`{"op":"insert","note":"not tidemark"}`)); err != nil {
				t.Fatal(err)
			}
			if err := other.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Publish(ctx, change(0x10000, i, int64(1+i%3))); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ids := stored(t, ctx, st)
	var ours []string
	foreign := 0
	for _, id := range ids {
		if id == "" {
			foreign++
			continue
		}
		ours = append(ours, id)
	}
	if foreign != 5 {
		t.Errorf("stream holds %d foreign messages, want 5", foreign)
	}
	if len(ours) != total {
		t.Fatalf("stream holds %d of our messages, want %d", len(ours), total)
	}
	for i, id := range ours {
		if want := fmt.Sprintf("0/10000:%d", i); id != want {
			t.Fatalf("our message %d is %s, want %s", i, id, want)
		}
	}
	if got := testenv.Counter(t, reg, "tidemark_publish_foreign_total"); got < 1 {
		t.Errorf("tidemark_publish_foreign_total %v: the foreign messages never broke the chain (published too late?)", got)
	}
}

func TestCheckpoints(t *testing.T) {
	e := startNATS(t)
	ctx, js := e.ctx, e.js
	if _, err := sink.OpenCheckpoints(ctx, js); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("open missing bucket: %v", err)
	}
	cps, err := sink.EnsureCheckpoints(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	if lsn, err := cps.Load(ctx, "tidemark"); err != nil || lsn != 0 {
		t.Fatalf("empty load: %s %v", lsn, err)
	}
	if err := cps.Save(ctx, "tidemark", 0x16B374D848); err != nil {
		t.Fatal(err)
	}
	if lsn, err := cps.Load(ctx, "tidemark"); err != nil || lsn.String() != "16/B374D848" {
		t.Fatalf("load: %s %v", lsn, err)
	}
	kv, err := js.KeyValue(ctx, sink.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "tidemark"); err != nil || string(e.Value()) != "16/B374D848" {
		t.Fatalf("raw value: %v", err)
	}

	if lost, err := cps.LoadLostEpochs(ctx, "tidemark"); err != nil || len(lost) != 0 {
		t.Fatalf("empty load of lost epochs: %v %v", lost, err)
	}
	want := []replication.LostEpoch{{ID: "s1-1.2", Supplier: 1, Lost: 0x16B374D848}, {ID: "s2-3.4", Supplier: 2, Lost: 0x16B374D900, Closed: 0x16C0000000}}
	if err := cps.SaveLostEpochs(ctx, "tidemark", want); err != nil {
		t.Fatal(err)
	}
	if got, err := cps.LoadLostEpochs(ctx, "tidemark"); err != nil || !slices.Equal(got, want) {
		t.Fatalf("lost epochs: %+v %v, want %+v", got, err, want)
	}
	if lsn, err := cps.Load(ctx, "tidemark"); err != nil || lsn.String() != "16/B374D848" {
		t.Fatalf("the lost epochs overwrote the checkpoint: %s %v", lsn, err)
	}
	if e, err := kv.Get(ctx, "tidemark.lost_epochs"); err != nil || !strings.Contains(string(e.Value()), `"lost":"16/B374D848"`) {
		t.Fatalf("raw lost epochs: %v", err)
	}
}

// BenchmarkHeaders: the subject and message ID every publish appends, each in its own buffer.
func BenchmarkHeaders(b *testing.B) {
	c := change(0x16B374D848, 4242, 7)
	for _, bc := range []struct {
		name   string
		append func([]byte, *event.Change) []byte
	}{{"MsgID", sink.AppendMsgID}, {"Subject", sink.AppendSubject}} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			for b.Loop() {
				buf = bc.append(buf[:0], c)
			}
		})
	}
}

// BenchmarkPublish is the publish path end to end against an embedded server (whose work is
// in the figures too): encode, publish, ack, with a Flush per 1,000 changes as at commits.
func BenchmarkPublish(b *testing.B) {
	ctx, pub := benchPublisher(b, sink.Options{})
	b.ReportAllocs()
	publishN(ctx, b, pub, 1000)
}

// BenchmarkPublishSmallWindow is BenchmarkPublish with a window of one or two messages
// (--max-in-flight 1 or 2, runs of one message), where each message waits for the one
// before it to be acknowledged.
func BenchmarkPublishSmallWindow(b *testing.B) {
	for _, window := range []int{1, 2} {
		b.Run(fmt.Sprint(window), func(b *testing.B) {
			ctx, pub := benchPublisher(b, sink.Options{MaxInFlight: window})
			publishN(ctx, b, pub, 0)
		})
	}
}

// publishN publishes b.N changes of generated product rows, flushing every flushEvery (0: at
// the end only), and reports CPU time as well as wall time: on a shared machine it varies less.
func publishN(ctx context.Context, b *testing.B, pub *sink.Publisher, flushEvery int) {
	rows := productRows(b, 256)
	c := change(event.LSN(1<<32), 0, 1)
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		c.Source.Seq, c.After = i, rows[i%len(rows)]
		if err := pub.Publish(ctx, c); err != nil {
			b.Fatal(err)
		}
		if flushEvery > 0 && i%flushEvery == flushEvery-1 {
			if err := pub.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := pub.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// benchPublisher starts an embedded server with the change stream and a publisher on it.
func benchPublisher(b *testing.B, opts sink.Options) (context.Context, *sink.Publisher) {
	b.Helper()
	nc := connect(b, testenv.NATS(b).URL())
	ctx := testenv.Context(b, 5*time.Minute)
	if _, err := sink.EnsureStream(ctx, setup(b, nc), sink.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	return ctx, newPublisher(b, nc, opts)
}

// productRows is n generated products (internal/fakedrop) as the decoder renders rows:
// about 480 bytes of values each, as supplier rows are.
func productRows(b *testing.B, n int) []event.Row {
	b.Helper()
	drop := fakedrop.New(fakedrop.Suppliers[0], 1)
	str := func(v string) json.RawMessage { return event.AppendString(nil, v) }
	rows := make([]event.Row, n)
	for i := range rows {
		p := drop.Product(i)
		attrs, err := json.Marshal(p.Attributes)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = event.Row{
			{Name: "id", Value: json.RawMessage(fmt.Sprint(i + 1))}, {Name: "supplier_id", Value: json.RawMessage("1")},
			{Name: "sku", Value: str(p.SKU)}, {Name: "name", Value: str(p.Name)},
			{Name: "description", Value: str(p.Description)}, {Name: "price", Value: json.RawMessage(p.Price)},
			{Name: "currency", Value: str(p.Currency)}, {Name: "status", Value: str(p.Status)},
			{Name: "attributes", Value: attrs},
		}
	}
	return rows
}

// processCPU is the user and system time of the process (client and embedded server).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestLateMessagesOfAnEarlierSession: messages whose acks timed out in an earlier session can
// still be stored after the next session has read the stream (a slow server): the new session
// must not store them a second time, whatever the duplicate window.
func TestLateMessagesOfAnEarlierSession(t *testing.T) {
	e := startNATS(t)
	ctx, nc := e.ctx, e.nc
	st := e.stream(t, sink.StreamConfig{Duplicates: 100 * time.Millisecond})
	pub := newPublisher(t, nc, sink.Options{MaxInFlight: 8192})
	// Whether the new session has a message taken and not yet published when it finds the
	// late ones depends on timing, so the case is tried several times.
	const rounds, late, total = 4, 5000, 6000
	lateJS, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(late))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for round := range rounds {
		commit := event.LSN(0xA000 + 0x1000*round)
		pos, err := pub.Resume(ctx, "tidemark")
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 && !pos.IsZero() {
			t.Fatalf("Resume on an empty stream: %s", pos)
		}
		// The earlier session's first changes land only now: far more than are in flight, so
		// when the new session finds them, what it has taken and not yet published (the
		// message held to see whether its run goes on) is among them too.
		for i := 0; i < late; i++ {
			c := change(commit, i, 1)
			if _, err := lateJS.PublishAsync(sink.Subject(c), c.AppendJSON(nil), jetstream.WithMsgID(sink.MsgID(c))); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-lateJS.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		time.Sleep(300 * time.Millisecond) // past the duplicate window
		for i := 0; i < total; i++ {
			if err := pub.Publish(ctx, change(commit, i, 1)); err != nil {
				t.Fatal(err)
			}
			want = append(want, sink.MsgID(change(commit, i, 1)))
		}
		if err := pub.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != uint64(len(want)) {
			t.Fatalf("round %d: stream holds %d messages, want %d", round, info.State.Msgs, len(want))
		}
	}
	for i, id := range stored(t, ctx, st) {
		if id != want[i] {
			t.Fatalf("message %d is %s, want %s", i, id, want[i])
		}
	}
}

// TestRefusedMessageMidRunLeavesNoGap: a message the stream refuses in the middle of a run
// (too large for the stream, while the ones after it are not) is not followed by the rest of
// its run: they were published without an ack request, and only their chain of expectations
// keeps them out. Once the limit is raised, Resume finds the last one stored and the replay
// fills the stream without a gap.
func TestRefusedMessageMidRunLeavesNoGap(t *testing.T) {
	e := startNATS(t)
	ctx, nc, js := e.ctx, e.nc, e.js
	st := e.stream(t, sink.StreamConfig{})
	maxSize := func(size int32) {
		t.Helper()
		cfg := st.CachedInfo().Config
		cfg.MaxMsgSize = size
		var err error
		if st, err = js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	maxSize(2000)
	const total, big = 600, 130 // 130 is inside the third run of 64 (MaxInFlight 256)
	changeAt := func(i int) *event.Change {
		c := change(0x9000, i, 1)
		if i == big {
			c.After = append(c.After, event.Column{Name: "description", Value: []byte(strings.Repeat("ü", 2000))})
		}
		return c
	}
	pub := newPublisher(t, nc, sink.Options{MaxInFlight: 256})
	if _, err := pub.Resume(ctx, "tidemark"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < total; i++ {
		if err := pub.Publish(ctx, changeAt(i)); err != nil {
			break
		}
	}
	if err := pub.Flush(ctx); err == nil || !strings.Contains(err.Error(), "message size exceeds maximum") {
		t.Fatalf("Flush: %v, want the stream's refusal of the large message", err)
	}
	storedInOrder(t, ctx, st, 0x9000, big) // the ones before the refused one
	maxSize(-1)
	resumeAt(t, ctx, pub, event.Position{CommitLSN: 0x9000, Seq: big - 1})
	publishEach(t, ctx, pub, big, total, changeAt)
	storedInOrder(t, ctx, st, 0x9000, total)
}

// TestOneAckPerRun: a steady stream of changes is acknowledged a run at a time, not message
// by message (what makes publishing cheap), and each Flush still waits for all of them.
func TestOneAckPerRun(t *testing.T) {
	e := startNATS(t)
	ctx := e.ctx
	st := e.stream(t, sink.StreamConfig{})
	// A connection of its own, so that what it receives is the publisher's acks.
	pc := connect(t, e.n.URL())
	pub := newPublisher(t, pc, sink.Options{})
	if _, err := pub.Resume(ctx, "tidemark"); err != nil {
		t.Fatal(err)
	}
	before := pc.Stats().InMsgs
	const total = 20000
	for i := 0; i < total; i++ {
		if err := pub.Publish(ctx, change(0xB000, i, 1)); err != nil {
			t.Fatal(err)
		}
		if i%5000 == 4999 {
			if err := pub.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := info.State.Msgs; got != uint64(i+1) {
				t.Fatalf("after Flush the stream holds %d messages, want %d", got, i+1)
			}
		}
	}
	acks := pc.Stats().InMsgs - before
	t.Logf("%d acks for %d messages", acks, total)
	if acks == 0 || acks > total/8 {
		t.Fatalf("%d acks for %d messages: want one per run (at most %d)", acks, total, total/8)
	}
}

// TestReanchorThatCannotReadTheStream: when a run breaks its expectation and the re-anchor
// cannot read the stream back (here the publisher's user may not read messages), the session
// fails: Flush reports it rather than hanging, Close returns, and every place is given back.
// The runs queued behind the broken one were already waited for by the re-anchor, so their
// acks cannot be waited for a second time.
func TestReanchorThatCannotReadTheStream(t *testing.T) {
	srv := testenv.NATSServer(t, server.Options{
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: "pub", Password: "pub", Permissions: &server.Permissions{Publish: &server.SubjectPermission{
				Allow: []string{">"},
				Deny:  []string{"$JS.API.STREAM.MSG.GET.>", "$JS.API.DIRECT.GET.>", "$JS.API.CONSUMER.CREATE.>"},
			}}},
		},
	})
	ctx := testenv.Context(t, time.Minute)
	admin, err := nats.Connect(srv.ClientURL(), nats.UserInfo("admin", "admin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("pub", "pub"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if _, err := sink.EnsureStream(ctx, setup(t, admin), sink.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	pub, err := sink.NewPublisher(nc, sink.Options{MaxInFlight: 64, AckTimeout: 500 * time.Millisecond}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Resume(ctx, "tidemark"); err != nil {
		t.Fatal(err)
	}
	// Stored after Resume read the stream: the first message's expectation breaks, and the
	// whole window is in flight behind it.
	if err := admin.Publish("products.9.insert", []byte(`{"note":"not tidemark"}`)); err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		if err := pub.Publish(ctx, change(0xC000, i, 1)); err != nil {
			break
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pub.Flush(fctx); err == nil || fctx.Err() != nil {
		t.Errorf("Flush: %v, want the failed re-anchor", err)
	}
	closed := make(chan struct{})
	go func() { pub.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return: the pump waits for an ack it has consumed already")
	}
	if got := testenv.Gauge(t, reg, "tidemark_publish_in_flight"); got != 0 {
		t.Errorf("tidemark_publish_in_flight %v after Close, want 0", got)
	}
}

// TestFailedResumePublishesNothing: a Resume that fails has not read where the stream ends,
// so nothing may be published until one succeeds. Before, a failed Resume had already
// forgotten the session's anchor, and the next message went out with no expectation at all:
// a replayed change was stored a second time, and Flush said nothing.
func TestFailedResumePublishesNothing(t *testing.T) {
	e := startNATS(t)
	ctx, nc := e.ctx, e.nc
	st := e.stream(t, sink.StreamConfig{Duplicates: 100 * time.Millisecond})
	pub := newPublisher(t, nc, sink.Options{MaxInFlight: 16})
	if _, err := pub.Resume(ctx, "tidemark"); err != nil {
		t.Fatal(err)
	}
	publishAll(t, ctx, pub, 0xD000, 0, 10)
	// Resumes whose context is gone: Resume returns at once, but the pump may still take the
	// request and fail to read the stream. One in a million of these runs never gets that far.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	for range 20 {
		if _, err := pub.Resume(gone, "tidemark"); err == nil {
			t.Fatal("Resume succeeded with a cancelled context")
		}
	}
	time.Sleep(300 * time.Millisecond) // past the duplicate window
	// A replay of a change the stream holds, after the failed Resumes.
	if err := pub.Publish(ctx, change(0xD000, 3, 1)); err == nil {
		if err := pub.Flush(ctx); err == nil {
			t.Error("Publish and Flush succeeded after a failed Resume, before one that read the stream")
		}
	}
	resumeAt(t, ctx, pub, event.Position{CommitLSN: 0xD000, Seq: 9})
	publishAll(t, ctx, pub, 0xD000, 0, 12)
	storedInOrder(t, ctx, st, 0xD000, 12)
}
