package sink_test

import (
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/sink"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func change(commit event.LSN, seq int, supplier int64) *event.Change {
	return &event.Change{
		Op: event.OpInsert, Schema: "public", Table: "products",
		Key:   event.Key{SupplierID: supplier, ID: int64(seq + 1)},
		After: event.Row{{Name: "id", Value: []byte(fmt.Sprint(seq + 1))}},
		Source: event.Source{Slot: "tidemark", LSN: commit - 100 + event.LSN(seq), CommitLSN: commit,
			XID: 9, CommitTS: time.Now(), Seq: seq},
	}
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// setup is a jetstream handle for stream setup and inspection.
func setup(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func newPublisher(t *testing.T, nc *nats.Conn, opts sink.Options) *sink.Publisher {
	t.Helper()
	pub, err := sink.NewPublisher(nc, opts, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return pub
}

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

// TestPublishDedup: publishing the same changes twice (a replay) stores them once, and
// more changes than MaxInFlight go through the bounded window.
func TestPublishDedup(t *testing.T) {
	n := testenv.NATS(t)
	ctx := testenv.Context(t, time.Minute)
	nc := connect(t, n.URL())
	pub := newPublisher(t, nc, sink.Options{MaxInFlight: 16})
	s, err := sink.EnsureStream(ctx, setup(t, nc), sink.StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.EnsureStream(ctx, setup(t, nc), sink.StreamConfig{Duplicates: time.Minute}); err != nil {
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
// Publish refuses more until then, and publishing works again afterwards.
func TestFailedAckIsReported(t *testing.T) {
	n := testenv.NATS(t)
	ctx := testenv.Context(t, time.Minute)
	nc := connect(t, n.URL())
	pub := newPublisher(t, nc, sink.Options{MaxInFlight: 8, AckTimeout: time.Second})
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
	if _, err := sink.EnsureStream(ctx, setup(t, nc), sink.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, change(0x3000, 0, 1)); err != nil {
		t.Fatalf("publish after the failure was reported: %v", err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestNATSDownTimesOut: while NATS is away acks time out and Flush says so rather than
// hanging; when it is back publishing works.
func TestNATSDownTimesOut(t *testing.T) {
	n := testenv.NATS(t)
	ctx := testenv.Context(t, time.Minute)
	nc := connect(t, n.URL())
	pub := newPublisher(t, nc, sink.Options{MaxInFlight: 8, AckTimeout: 500 * time.Millisecond})
	if _, err := sink.EnsureStream(ctx, setup(t, nc), sink.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
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
		err := pub.Publish(ctx, change(0x5000, 0, 1))
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

func TestCheckpoints(t *testing.T) {
	n := testenv.NATS(t)
	ctx := testenv.Context(t, time.Minute)
	js, err := jetstream.New(connect(t, n.URL()))
	if err != nil {
		t.Fatal(err)
	}
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
}

func BenchmarkMsgID(b *testing.B) {
	c := change(0x16B374D848, 4242, 7)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = sink.AppendMsgID(buf[:0], c)
	}
}

func BenchmarkSubject(b *testing.B) {
	c := change(0x16B374D848, 4242, 7)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = sink.AppendSubject(buf[:0], c)
	}
}

// BenchmarkPublish is the publish path end to end against an embedded server (whose work is
// in the figures too): encode, publish, ack, with a Flush per 1,000 changes as at commits.
func BenchmarkPublish(b *testing.B) {
	n := testenv.NATS(b)
	ctx := testenv.Context(b, 5*time.Minute)
	nc, err := nats.Connect(n.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	pub, err := sink.NewPublisher(nc, sink.Options{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	if _, err := sink.EnsureStream(ctx, setup(b, nc), sink.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	c := change(event.LSN(1<<32), 0, 7)
	b.ReportAllocs()
	b.ResetTimer()
	// CPU time as well as wall time: on a shared machine it varies less.
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		c.Source.Seq = i
		if err := pub.Publish(ctx, c); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
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

// processCPU is the user and system time of the process (client and embedded server).
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
