package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/sink"
)

// Log lines of replicate's start that say how it read the stream back.
const (
	logStreamHolds = "the stream holds the slot's changes up to a position"
	logScanLimit   = "no message of this slot among the stream's last messages"
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
	for _, want := range []string{"the stream holds changes from beyond the server's WAL", ahead.Position().String(), "nothing was published", "a stream from elsewhere"} {
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

// publishForeign publishes n messages of another client into the stream (no Nats-Msg-Id, no
// slot in the event), a thousand at a time, and checks that JetStream stored every one.
func publishForeign(ctx context.Context, t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	for done := 0; done < n; {
		batch := make([]jetstream.PubAckFuture, 0, min(1000, n-done))
		for range cap(batch) {
			f, err := js.PublishAsync("products.1.insert", []byte(`{"op":"insert","note":"not from tidemark"}`))
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, f)
		}
		for _, f := range batch {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatalf("foreign message %d: %v", done, err)
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
			done++
		}
	}
}

// unconfirmedInserts has a replicator publish ten inserts of products with SKUs prefix-1 to
// prefix-10 and kills it with SIGKILL before it confirms them (no status update for an hour),
// so that the next replicator replays them. It returns the WAL position after the inserts and
// the time of the kill.
func (e *replEnv) unconfirmedInserts(ctx context.Context, t *testing.T, js jetstream.JetStream, prefix string) (pglogrepl.LSN, time.Time) {
	t.Helper()
	p := e.replicate(t, slices.Concat(patient, []string{"--status-interval", "1h"})...)
	p.streaming(t)
	e.exec(t, fmt.Sprintf(`INSERT INTO products (supplier_id, sku, name) SELECT 1, '%s-' || g, 'n' FROM generate_series(1, 10) g`, prefix))
	end := e.currentLSN(t)
	testenv.WaitFor(t, "the inserts in the stream", time.Minute, func() bool { return streamMsgs(ctx, js) >= 10 })
	kill9(t, p)
	killed := time.Now()
	if s := e.slot(t); s.ConfirmedLSN >= end {
		t.Fatalf("slot confirmed %s: the inserts were confirmed, a replay would prove nothing", s.ConfirmedLSN)
	}
	return end, killed
}

// TestStreamScanLimit: the slot's last change behind 99,999 messages of another client is
// still found (a replay after the duplicate window skips what the stream holds); behind
// 100,000 replicate logs that it found none of the slot and streams on from the confirmed LSN.
func TestStreamScanLimit(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 4*time.Minute)
	end, killed := e.unconfirmedInserts(ctx, t, js, "M")
	last := checkOnceInOrder(t, js, 10, 0)[9].Position()

	publishForeign(ctx, t, js, 99_999)
	time.Sleep(pastWindow - time.Since(killed))
	p := e.replicate(t, patient...)
	testenv.WaitFor(t, "the slot to confirm the inserts", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	out := p.out.String()
	if !strings.Contains(out, logStreamHolds) || !strings.Contains(out, "position="+last.String()) || strings.Contains(out, logScanLimit) {
		t.Errorf("behind 99,999 foreign messages, replicate did not find the slot's last change at %s:\n%s", last, out)
	}
	if n := streamMsgs(ctx, js); n != 10+99_999 {
		t.Fatalf("stream holds %d messages after the replay, want the 10 changes and 99,999 others", n)
	}
	stop(t, p)

	publishForeign(ctx, t, js, 1)
	p = e.replicate(t, patient...)
	p.streaming(t)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'M-after', 'n')`)
	end = e.currentLSN(t)
	testenv.WaitFor(t, "the slot to confirm the insert", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	out = p.out.String()
	if !strings.Contains(out, logScanLimit) || !strings.Contains(out, "scanned=100000") || strings.Contains(out, logStreamHolds) {
		t.Errorf("behind 100,000 foreign messages, replicate did not warn that it found none of the slot's:\n%s", out)
	}
	// Each change once, in order: the replay after the first restart repeated none.
	checkOnceInOrder(t, js, 11, 100_000)
}

// TestStreamPurgedLooksNew: a stream purged, or expired by its message limit to nothing of the
// slot's, looks like a new stream to replicate: it logs neither that the stream holds the
// slot's changes nor that it found none, and publishes everything from the confirmed LSN, the
// changes a replay brings again included.
func TestStreamPurgedLooksNew(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 3*time.Minute)
	end, killed := e.unconfirmedInserts(ctx, t, js, "P")
	st, err := js.Stream(ctx, event.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	quiet := func(p *proc) {
		t.Helper()
		if out := p.out.String(); strings.Contains(out, logStreamHolds) || strings.Contains(out, logScanLimit) {
			t.Errorf("replicate read something of the slot's, or missed it, in a stream that holds nothing of it:\n%s", out)
		}
	}

	// Purged: the replay of the unconfirmed inserts is published again, once.
	time.Sleep(pastWindow - time.Since(killed))
	p := e.replicate(t, patient...)
	testenv.WaitFor(t, "the slot to confirm the inserts", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	quiet(p)
	checkOnceInOrder(t, js, 10, 0)
	stop(t, p)

	// Expired: a limit of two messages, then two of another client.
	setMaxMsgs(ctx, t, js, 2, jetstream.DiscardOld)
	publishForeign(ctx, t, js, 2)
	setMaxMsgs(ctx, t, js, -1, jetstream.DiscardOld)
	if n := streamMsgs(ctx, js); n != 2 {
		t.Fatalf("stream holds %d messages at its limit of 2", n)
	}
	p = e.replicate(t, patient...)
	p.streaming(t)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'P-after', 'n')`)
	end = e.currentLSN(t)
	testenv.WaitFor(t, "the slot to confirm the insert", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	quiet(p)
	checkOnceInOrder(t, js, 1, 2)
}
