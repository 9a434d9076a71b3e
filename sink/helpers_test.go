package sink_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/sandbox"
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

func connect(t testing.TB, url string) *nats.Conn {
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

func newPublisher(t testing.TB, nc *nats.Conn, opts sink.Options) *sink.Publisher {
	t.Helper()
	pub, err := sink.NewPublisher(nc, opts, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return pub
}

// natsTest is where most publisher tests start: a NATS server of the test's own and a
// connection to it, with JetStream for stream setup and inspection.
type natsTest struct {
	ctx context.Context
	n   *sandbox.NATS
	nc  *nats.Conn
	js  jetstream.JetStream
}

func startNATS(t *testing.T) natsTest {
	t.Helper()
	n := testenv.NATS(t)
	nc := connect(t, n.URL())
	return natsTest{ctx: testenv.Context(t, time.Minute), n: n, nc: nc, js: setup(t, nc)}
}

// stream sets up the change stream.
func (e natsTest) stream(t *testing.T, cfg sink.StreamConfig) jetstream.Stream {
	t.Helper()
	st, err := sink.EnsureStream(e.ctx, e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// resumeAt starts a session of pub and checks where Resume found the slot's last change.
func resumeAt(t *testing.T, ctx context.Context, pub *sink.Publisher, want event.Position) {
	t.Helper()
	pos, err := pub.Resume(ctx, "tidemark")
	if err != nil {
		t.Fatal(err)
	}
	if pos != want {
		t.Fatalf("Resume found %s, want %s", pos, want)
	}
}

// publishAll publishes the changes from to to (not included) of commit and flushes them.
func publishAll(t *testing.T, ctx context.Context, pub *sink.Publisher, commit event.LSN, from, to int) {
	t.Helper()
	publishEach(t, ctx, pub, from, to, func(i int) *event.Change { return change(commit, i, 1) })
}

// publishEach publishes changeAt(i) for i from from to to (not included) and flushes them.
func publishEach(t *testing.T, ctx context.Context, pub *sink.Publisher, from, to int, changeAt func(int) *event.Change) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := pub.Publish(ctx, changeAt(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// storedInOrder checks that the stream holds the first n changes of commit and nothing else,
// in order: no gap, no repeat.
func storedInOrder(t *testing.T, ctx context.Context, st jetstream.Stream, commit event.LSN, n int) {
	t.Helper()
	ids := stored(t, ctx, st)
	if len(ids) != n {
		t.Fatalf("stream holds %d messages, want %d", len(ids), n)
	}
	for i, id := range ids {
		if want := sink.MsgID(change(commit, i, 1)); id != want {
			t.Fatalf("message %d is %s, want %s: a gap or a repeat", i, id, want)
		}
	}
}

// stored reads every message of the stream: its msg ids in stream order.
func stored(t *testing.T, ctx context.Context, st jetstream.Stream) []string {
	t.Helper()
	var ids []string
	for m := range testenv.StreamMessages(t, ctx, st) {
		ids = append(ids, m.Headers().Get(jetstream.MsgIDHeader))
	}
	return ids
}
