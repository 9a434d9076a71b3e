package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/sink"
)

// The tests of this file restart the replicator after JetStream's duplicate window has passed
// (a 1s window, waits of 3s: the server forgets ids at most a window after they expire), so
// only the stream's own last message can keep a replay from publishing a change twice.
const (
	dedupWindow = "1s"
	pastWindow  = 3 * time.Second
)

// patient is for the tests whose fault is not a lost ack: a busy machine (the race detector,
// other tests) must not add timeouts of its own.
var patient = []string{"--dedup-window", dedupWindow, "--ack-timeout", "30s"}

// storedMsg is one message of the stream.
type storedMsg struct {
	seq     uint64
	id      string
	subject string
	data    []byte
}

// readAll returns every message of the stream, in stream order.
func readAll(t *testing.T, js jetstream.JetStream) []storedMsg {
	t.Helper()
	var msgs []storedMsg
	for m := range streamMessages(t, js) {
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, storedMsg{seq: md.Sequence.Stream, id: m.Headers().Get(jetstream.MsgIDHeader), subject: m.Subject(), data: m.Data()})
	}
	return msgs
}

// checkOnceInOrder reads the stream message by message and checks that it holds exactly want
// row changes of the slot (a snapshot's epoch events are checked with them but not counted), no Nats-Msg-Id twice, in the slot's order (each position after the one
// before it, so also in commit order per product), and foreign messages that were not the
// replicator's. It returns the changes.
func checkOnceInOrder(t *testing.T, js jetstream.JetStream, want, foreign int) []event.Change {
	t.Helper()
	var (
		changes []event.Change
		others  int
		ids     = map[string]uint64{}
		last    event.Position
		perKey  = map[event.Key]event.Position{}
	)
	for _, m := range readAll(t, js) {
		pos, ok := sink.ParseMsgID(m.id)
		if !ok {
			others++
			continue
		}
		if seq, dup := ids[m.id]; dup {
			t.Fatalf("msg id %s stored twice: stream sequences %d and %d", m.id, seq, m.seq)
		}
		ids[m.id] = m.seq
		var c event.Change
		if err := json.Unmarshal(m.data, &c); err != nil {
			t.Fatalf("message %d (%s): %v", m.seq, m.id, err)
		}
		if c.Position() != pos || sink.Subject(&c) != m.subject {
			t.Fatalf("message %d: id %s and subject %s, its event says %s and %s", m.seq, m.id, m.subject, c.Position(), sink.Subject(&c))
		}
		if pos.Compare(last) <= 0 {
			t.Fatalf("message %d at %s follows %s: out of order", m.seq, pos, last)
		}
		if prev, ok := perKey[c.Key]; ok && pos.Compare(prev) <= 0 {
			t.Fatalf("product %v: %s stored after %s", c.Key, pos, prev)
		}
		last, perKey[c.Key] = pos, pos
		if c.Op != event.OpEpochOpen && c.Op != event.OpEpochClose { // a snapshot's, checked as the rest
			changes = append(changes, c)
		}
	}
	if len(changes) != want || others != foreign {
		t.Fatalf("stream holds %d changes and %d other messages, want %d and %d", len(changes), others, want, foreign)
	}
	return changes
}

// kill9 kills p with SIGKILL and waits for it to be gone.
func kill9(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// bigTransaction inserts rows products in one transaction.
func (e *replEnv) bigTransaction(t *testing.T, rows int, prefix string) {
	t.Helper()
	e.exec(t, fmt.Sprintf(`INSERT INTO products (supplier_id, sku, name, description, price, attributes)
		SELECT 1 + g %% 2, '%s-' || g, 'Product %s ' || g, repeat('Waterproof hiking jacket, ', 8), g / 100.0,
		       jsonb_build_object('color', 'red', 'weight_g', g)
		FROM generate_series(1, %d) g`, prefix, prefix, rows))
}

// TestExactlyOnceKill9AtFivePoints kills the replicator with SIGKILL at five points of one
// 200k-row transaction (a supplier drop of that size is one transaction), each time
// restarting it after the duplicate window: every change is in the stream once, in order.
// Each kill lands 20 000 changes or more before the next point
// (a race-built replicator publishes a few hundred past the point before the kill), and each
// restart decodes the transaction from its start again.
func TestExactlyOnceKill9AtFivePoints(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 10*time.Minute)
	args := patient
	p := e.replicate(t, args...)
	waitStream(ctx, t, js)
	const rows = 200_000
	e.bigTransaction(t, rows, "K")
	end := e.currentLSN(t)
	for i, share := range []float64{0.1, 0.25, 0.45, 0.65, 0.85} {
		at := uint64(share * rows)
		testenv.WaitFor(t, fmt.Sprintf("%d changes in the stream", at), 3*time.Minute, func() bool { return streamMsgs(ctx, js) >= at })
		kill9(t, p)
		n := streamMsgs(ctx, js)
		if n >= rows {
			t.Fatalf("kill %d: the whole transaction was in the stream before it: the test proves nothing", i+1)
		}
		if s := e.slot(t); s.ConfirmedLSN >= end {
			t.Fatalf("kill %d: slot confirmed %s past the unfinished transaction (end %s)", i+1, s.ConfirmedLSN, end)
		}
		t.Logf("kill %d at %d of %d changes", i+1, n, rows)
		time.Sleep(pastWindow)
		p = e.replicate(t, args...)
		// The restarted replicator skips what the stream holds: it says so once it catches up.
		testenv.WaitFor(t, "the restart to catch up with the stream", 3*time.Minute, func() bool {
			return strings.Contains(p.out.String(), "caught up with the stream")
		})
	}
	testenv.WaitFor(t, "the slot to confirm the transaction", 3*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	checkOnceInOrder(t, js, rows, 0)
}

// TestExactlyOnceAckedNotConfirmed: every change of a transaction is acknowledged by
// JetStream but the slot has not been told when the replicator dies; a restart after the
// duplicate window publishes none of them again.
func TestExactlyOnceAckedNotConfirmed(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 8*time.Minute)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 1, 'U-' || g, 'n' FROM generate_series(1, 5000) g`)
	first := e.replicate(t, patient...)
	first.streaming(t)
	// The rows reach the stream through the initial snapshot. It must be over before the kill:
	// resumed by the next replicator while the updates run, it would rightly drop the rows they
	// update from its chunks, and the stream would hold fewer than 10,000 changes.
	testenv.WaitFor(t, "the initial snapshot written", time.Minute, func() bool {
		return strings.Contains(first.out.String(), "snapshot done")
	})
	start := e.currentLSN(t)
	testenv.WaitFor(t, "the snapshot confirmed", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= start })
	if n := streamMsgs(ctx, js); n < 5000 {
		t.Fatalf("the snapshot confirmed with %d messages in the stream, want 5000 rows and their epochs", n)
	}
	kill9(t, first)
	// No status update for an hour: what it publishes is acked, never confirmed.
	p := e.replicate(t, slices.Concat(patient, []string{"--status-interval", "1h"})...)
	p.streaming(t)
	e.exec(t, `UPDATE products SET name = 'renamed ' || id`)
	end := e.currentLSN(t)
	// Generous: the tests run in parallel, and a busy machine slows a race-built replicator.
	testenv.WaitFor(t, "the updates in the stream", 3*time.Minute, func() bool { return streamMsgs(ctx, js) >= 10_000 })
	kill9(t, p)
	if s := e.slot(t); s.ConfirmedLSN >= end {
		t.Fatalf("slot confirmed %s: the updates were confirmed, the test proves nothing", s.ConfirmedLSN)
	}
	time.Sleep(pastWindow)
	e.replicate(t, patient...)
	testenv.WaitFor(t, "the slot to confirm the updates", 3*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	changes := checkOnceInOrder(t, js, 10_000, 0)
	if changes[5000].Op != event.OpUpdate {
		t.Fatalf("change 5000 is an %s", changes[5000].Op)
	}
}

// TestExactlyOnceNATSRestartMidPublish: the NATS server goes away while a 50k-row
// transaction is being published, for longer than the duplicate window, and comes back.
func TestExactlyOnceNATSRestartMidPublish(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 5*time.Minute)
	p := e.replicate(t, "--dedup-window", dedupWindow)
	waitStream(ctx, t, js)
	const rows = 50_000
	e.bigTransaction(t, rows, "N")
	end := e.currentLSN(t)
	testenv.WaitFor(t, "part of the transaction in the stream", 2*time.Minute, func() bool { return streamMsgs(ctx, js) >= rows/5 })
	e.nats.Shutdown()
	time.Sleep(pastWindow)
	if err := e.nats.Start(); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(ctx, js); n >= rows {
		t.Fatalf("the whole transaction (%d) was stored before NATS went away: the test proves nothing", n)
	}
	testenv.WaitFor(t, "the slot to confirm the transaction", 3*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	if !strings.Contains(p.out.String(), "replication interrupted") {
		t.Fatal("the replicator never noticed NATS was gone")
	}
	checkOnceInOrder(t, js, rows, 0)
}

// setMaxMsgs sets the stream's message limit (-1: none) and what it discards at the limit.
func setMaxMsgs(ctx context.Context, t *testing.T, js jetstream.JetStream, n int64, discard jetstream.DiscardPolicy) {
	t.Helper()
	st, err := js.Stream(ctx, event.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = n, discard
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// TestExactlyOnceStreamLimitReached: the stream refuses messages mid-transaction (its
// message limit, discard new); replicate retries; once the limit is raised the stream holds
// every change once, in order, with no gap where the refusals began.
func TestExactlyOnceStreamLimitReached(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 5*time.Minute)
	p := e.replicate(t, patient...)
	waitStream(ctx, t, js)
	const rows, limit = 30_000, 10_000
	setMaxMsgs(ctx, t, js, limit, jetstream.DiscardNew)
	e.bigTransaction(t, rows, "L")
	end := e.currentLSN(t)
	testenv.WaitFor(t, "refusals and retries", 2*time.Minute, func() bool {
		return strings.Count(p.out.String(), "replication interrupted") >= 2
	})
	if n := streamMsgs(ctx, js); n != limit {
		t.Fatalf("stream holds %d messages at its limit of %d", n, limit)
	}
	time.Sleep(pastWindow)
	setMaxMsgs(ctx, t, js, -1, jetstream.DiscardNew)
	testenv.WaitFor(t, "the slot to confirm the transaction", 3*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	checkOnceInOrder(t, js, rows, 0)
}

// TestExactlyOnceForeignMessages: messages another client publishes into the stream while a
// 50k-row transaction is being published do not stop replication, and make it neither skip
// nor repeat a change.
func TestExactlyOnceForeignMessages(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 5*time.Minute)
	p := e.replicate(t, patient...)
	waitStream(ctx, t, js)
	nc, err := nats.Connect(e.nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const rows = 50_000
	e.bigTransaction(t, rows, "F")
	end := e.currentLSN(t)
	for i, share := range []float64{0.2, 0.5, 0.8} {
		at := uint64(share * rows)
		testenv.WaitFor(t, fmt.Sprintf("%d changes", at), 2*time.Minute, func() bool { return streamMsgs(ctx, js) >= at })
		// A misconfigured client: plain core publishes on the stream's subjects.
		if err := nc.Publish("products.1.insert", []byte(fmt.Sprintf(`{"op":"insert","note":"not from tidemark %d"}`, i))); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if n := streamMsgs(ctx, js); n >= rows {
		t.Fatalf("the whole transaction (%d) was stored before the last foreign message", n)
	}
	testenv.WaitFor(t, "the slot to confirm the transaction", 3*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	checkOnceInOrder(t, js, rows, 3)
	if !strings.Contains(p.out.String(), "not published by this replicator") {
		t.Error("the replicator did not log the foreign messages")
	}
	if strings.Contains(p.out.String(), "replication interrupted") {
		t.Error("a foreign message interrupted replication")
	}
}

// TestPipelineUnderFaults: the encoders keep the vectors equal to the products while the
// replicator is killed mid-transaction, an encoder holding unacknowledged events is killed and
// NATS restarts mid-publish, each outage longer than the duplicate window.
func TestPipelineUnderFaults(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 8*time.Minute)
	repl := e.replicate(t, "--dedup-window", dedupWindow)
	encode := func() *proc {
		return e.start(t, "encode", "--http-addr=", "--workers", "2", "--batch", "500", "--batch-wait", "100ms", "--ack-wait", "2s")
	}
	first := encode()
	waitStream(ctx, t, js)
	const rows = 30_000
	e.bigTransaction(t, rows, "P")

	// The replicator, killed a third of the way through the transaction.
	testenv.WaitFor(t, "a third of the transaction", 2*time.Minute, func() bool { return streamMsgs(ctx, js) >= rows/3 })
	kill9(t, repl)
	if n := streamMsgs(ctx, js); n >= rows {
		t.Fatalf("the whole transaction (%d) was in the stream before the kill", n)
	}
	time.Sleep(pastWindow)
	// Each process a fault is meant to hit must be up first: the commands connect to NATS
	// once at start and exit when it is away (a supervisor restarts them), so a race-built
	// replicator or encoder still starting when NATS goes down below would only exit.
	e.replicate(t, "--dedup-window", dedupWindow).streaming(t)

	// The only encoder, killed while it holds delivered events it has not acknowledged.
	cons, err := js.Consumer(ctx, event.Stream, "encoders")
	if err != nil {
		t.Fatal(err)
	}
	// Stopped (SIGSTOP) while the consumer is read, so that it cannot ack between the check
	// and the kill: on an idle machine it caught up and acked everything in that gap. The
	// acks it wrote just before it stopped may still be on their way to the server (a CI run
	// saw events pending, and none left after the kill), so the consumer is read until two
	// reads agree.
	testenv.WaitFor(t, "events in the encoder's hands", 2*time.Minute, func() bool {
		if err := first.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		info, err := settledConsumer(ctx, cons)
		if err == nil && info.NumAckPending > 0 && info.AckFloor.Stream > 1000 {
			return true
		}
		if err := first.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		return false
	})
	kill9(t, first)
	held, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if held.NumAckPending == 0 {
		t.Fatal("the killed encoder held no unacknowledged event")
	}
	for _, p := range []*proc{encode(), encode()} {
		p.encoding(t)
	}

	// NATS, away for longer than the duplicate window while updates and deletes are published.
	var updates, deletes int
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FILTER (WHERE id % 7 = 0), count(*) FILTER (WHERE id % 11 = 0) FROM products").Scan(&updates, &deletes); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `UPDATE products SET name = name || ' (renamed)' WHERE id % 7 = 0`)
	e.exec(t, `DELETE FROM products WHERE id % 11 = 0`)
	e.nats.Shutdown()
	time.Sleep(pastWindow)
	if err := e.nats.Start(); err != nil {
		t.Fatal(err)
	}
	total := rows + updates + deletes
	if n := streamMsgs(ctx, js); n >= uint64(total) {
		t.Fatalf("the stream held %d messages, all %d changes, before NATS went away: the test proves nothing", n, total)
	}
	end := e.currentLSN(t)
	testenv.WaitFor(t, "the slot to confirm everything", 3*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	checkOnceInOrder(t, js, total, 0)
	testenv.WaitFor(t, "the vectors to equal the products", 3*time.Minute, func() bool {
		info, err := cons.Info(ctx)
		if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
			return false
		}
		stale, missing, err := compareVectors(ctx, e.pool, "hash-v1-384")
		if err != nil {
			t.Fatal(err)
		}
		return stale == 0 && missing == 0
	})
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer <= uint64(total) {
		t.Errorf("%d deliveries for %d events: what the killed encoder held was never delivered again", info.Delivered.Consumer, total)
	}
}

// settledConsumer reads the consumer's state until two reads 200 ms apart agree on what was
// delivered and acknowledged: once its only client is stopped, acks still in flight have
// landed then.
func settledConsumer(ctx context.Context, cons jetstream.Consumer) (*jetstream.ConsumerInfo, error) {
	prev, err := cons.Info(ctx)
	for err == nil {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		var info *jetstream.ConsumerInfo
		if info, err = cons.Info(ctx); err != nil {
			break
		}
		if info.AckFloor.Consumer == prev.AckFloor.Consumer && info.Delivered.Consumer == prev.Delivered.Consumer && info.NumAckPending == prev.NumAckPending {
			return info, nil
		}
		prev = info
	}
	return nil, err
}
