package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/sink"
)

// The tests of this file check how replicate reads the stream back at the start of a session
// (the README's delivery guarantees, "Exactly once into the stream" and "A stream from
// elsewhere") when the stream's last message of the slot is not an ordinary one.

// TestStreamAhead: a stream whose last change of the slot lies beyond the server's WAL (filled
// from another database, or the database went back in time) makes replicate publish nothing
// and exit 1 with an error saying so, although the slot has changes to publish.
func TestStreamAhead(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 2*time.Minute)
	e.seedReplicated(t, 10)
	before := streamMsgs(ctx, js)

	// A change of the slot 4 GB of WAL further on than this server has written.
	ahead := &event.Change{
		Op: event.OpInsert, Schema: "public", Table: "products",
		Key:    event.Key{SupplierID: 1, ID: 1},
		After:  event.Row{{Name: "id", Value: []byte("1")}},
		Source: event.Source{Slot: "tidemark", LSN: event.LSN(e.currentLSN(t)) + 1<<32, CommitTS: time.Now()},
	}
	ahead.Source.CommitLSN = ahead.Source.LSN + 0x40
	if _, err := js.Publish(ctx, sink.Subject(ahead), ahead.AppendJSON(nil), jetstream.WithMsgID(sink.MsgID(ahead))); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 1, 'A-' || g, 'n' FROM generate_series(1, 20) g`)
	end := e.currentLSN(t)

	code, out := e.replicateExit(t)
	if code != 1 {
		t.Fatalf("replicate exited %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"the stream holds changes from beyond the server's WAL", ahead.Position().String(), "nothing was published"} {
		if !strings.Contains(out, want) {
			t.Errorf("replicate's output lacks %q:\n%s", want, out)
		}
	}
	if n := streamMsgs(ctx, js); n != before+1 {
		t.Errorf("stream holds %d messages, want the %d before and the one from elsewhere", n, before)
	}
	st, err := js.Stream(ctx, event.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last, err := st.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	if id := last.Header.Get(jetstream.MsgIDHeader); id != sink.MsgID(ahead) {
		t.Errorf("the stream's last message is %s, want the one from elsewhere, %s", id, sink.MsgID(ahead))
	}
	if s := e.slot(t); s.ConfirmedLSN >= end {
		t.Errorf("slot confirmed %s, past the inserts (%s) it never published", s.ConfirmedLSN, end)
	}
}
