package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/sandbox"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
)

// replEnv is a migrated database with suppliers 1 and 2, in a cluster no other running test
// uses (every replicator's slot is tidemark), and a NATS server of its own: the tests that use
// it run in parallel.
type replEnv struct {
	url  string
	pool *pgxpool.Pool
	nats *sandbox.NATS
	bin  string
}

func newReplEnv(t *testing.T) *replEnv {
	t.Helper()
	return newReplEnvAt(t, testenv.DatabaseIn(t, testenv.Lane(t)))
}

// newReplEnvJS is newReplEnv with the two things most of its tests open with besides: a
// JetStream client of its NATS server, and a context that ends after timeout.
func newReplEnvJS(t *testing.T, timeout time.Duration) (*replEnv, jetstream.JetStream, context.Context) {
	t.Helper()
	e := newReplEnv(t)
	return e, e.js(t), testenv.Context(t, timeout)
}

// newReplEnvAt is newReplEnv on the database at url (of a cluster of the test's own).
func newReplEnvAt(t *testing.T, url string) *replEnv {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	pool := testenv.Migrated(ctx, t, url)
	for _, id := range []int32{1, 2} {
		testenv.AddSupplier(ctx, t, pool, id, "")
	}
	e := &replEnv{url: url, pool: pool, nats: testenv.NATS(t), bin: testenv.Binary(t)}
	t.Cleanup(func() {
		// Slots count against the shared cluster's limit.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := 0; i < 50; i++ {
			_, err := pool.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database()")
			if err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return e
}

// proc is a tidemark subprocess with its output kept for the test log.
type proc struct {
	cmd  *exec.Cmd
	out  *sandbox.Output
	done chan struct{} // closed when the process has exited
	err  error         // its exit error, once done
}

// wait waits for the process to exit and returns its exit error.
func (p *proc) wait() error {
	<-p.done
	return p.err
}

func (e *replEnv) start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	full := append([]string{name, "--pg-url", e.url, "--nats-url", e.nats.URL(), "--log-level", "debug"}, args...)
	cmd := exec.Command(e.bin, full...)
	p := &proc{cmd: cmd, out: &sandbox.Output{}, done: make(chan struct{})}
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

func (e *replEnv) replicate(t *testing.T, args ...string) *proc {
	t.Helper()
	return e.start(t, "replicate", append([]string{"--http-addr=", "--status-interval", "200ms", "--heartbeat", "1s", "--ack-timeout", "3s"}, args...)...)
}

// streaming waits until p streams from the slot.
func (p *proc) streaming(t *testing.T) {
	t.Helper()
	testenv.WaitFor(t, "replicate to stream", time.Minute, func() bool { return strings.Contains(p.out.String(), "msg=streaming") })
}

// encoding waits until p, an encoder, has bound its consumer (and so is connected to NATS).
func (p *proc) encoding(t *testing.T) {
	t.Helper()
	testenv.WaitFor(t, "encode to bind its consumer", time.Minute, func() bool { return strings.Contains(p.out.String(), "msg=encoding") })
}

// waitStream waits until the change stream exists (replicate creates it at start).
func waitStream(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	testenv.WaitFor(t, "the stream", 30*time.Second, func() bool { _, err := js.Stream(ctx, event.Stream); return err == nil })
}

func (e *replEnv) js(t *testing.T) jetstream.JetStream {
	t.Helper()
	js := testenv.JetStream(t, e.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	return js
}

func (e *replEnv) exec(t *testing.T, sql string) {
	t.Helper()
	if _, err := e.pool.Exec(testenv.Context(t, 5*time.Minute), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// currentLSN is the WAL insert position once it is flushed (the sandbox commits
// asynchronously, and the slot only ever sees flushed WAL).
func (e *replEnv) currentLSN(t *testing.T) pglogrepl.LSN {
	t.Helper()
	return flushedInsertLSN(t, e.pool)
}

func flushedInsertLSN(t *testing.T, pool *pgxpool.Pool) pglogrepl.LSN {
	t.Helper()
	var s string
	if err := pool.QueryRow(context.Background(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, _ := pglogrepl.ParseLSN(s)
	testenv.WaitFor(t, "the WAL flush", 30*time.Second, func() bool {
		var f string
		if err := pool.QueryRow(context.Background(), "SELECT pg_current_wal_flush_lsn()::text").Scan(&f); err != nil {
			t.Fatal(err)
		}
		fl, _ := pglogrepl.ParseLSN(f)
		return fl >= lsn
	})
	return lsn
}

func streamMsgs(ctx context.Context, js jetstream.JetStream) uint64 {
	s, err := js.Stream(ctx, event.Stream)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// readStream returns every message id of the stream with how often it occurs, and the
// decoded events.
func readStream(t *testing.T, js jetstream.JetStream) (map[string]int, []event.Change) {
	t.Helper()
	ids := map[string]int{}
	var events []event.Change
	for m := range streamMessages(t, js) {
		ids[m.Headers().Get(jetstream.MsgIDHeader)]++
		var c event.Change
		if err := json.Unmarshal(m.Data(), &c); err != nil {
			t.Fatalf("bad event %s: %v", m.Data(), err)
		}
		if want := sink.MsgID(&c); want != m.Headers().Get(jetstream.MsgIDHeader) {
			t.Fatalf("msg id %s, event says %s", m.Headers().Get(jetstream.MsgIDHeader), want)
		}
		if want := sink.Subject(&c); want != m.Subject() {
			t.Fatalf("subject %s, event says %s", m.Subject(), want)
		}
		events = append(events, c)
	}
	return ids, events
}

// streamMessages yields every message the stream holds when it is called, in stream order.
func streamMessages(t *testing.T, js jetstream.JetStream) iter.Seq[jetstream.Msg] {
	ctx := testenv.Context(t, 2*time.Minute)
	st, err := js.Stream(ctx, event.Stream)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.StreamMessages(t, ctx, st)
}

func (e *replEnv) slot(t *testing.T) replication.Slot {
	t.Helper()
	s, err := replication.ReadSlot(context.Background(), e.pool, "tidemark")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkExactlyOnce reads the stream and checks it holds want distinct changes, each once.
func checkExactlyOnce(t *testing.T, js jetstream.JetStream, want int) []event.Change {
	t.Helper()
	ids, events := readStream(t, js)
	if len(ids) != want || len(events) != want {
		t.Fatalf("stream holds %d messages with %d distinct ids, want %d each", len(events), len(ids), want)
	}
	keys := map[event.Key]int{}
	for _, c := range events {
		keys[c.Key]++
	}
	for id, n := range ids {
		if n != 1 {
			t.Fatalf("msg id %s stored %d times", id, n)
		}
	}
	return events
}

// TestReplicateKill9MidTransaction kills the replicator with SIGKILL while it publishes a
// 100k-row transaction; after a restart the stream holds every change exactly once.
func TestReplicateKill9MidTransaction(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 5*time.Minute)
	p := e.replicate(t)
	waitStream(ctx, t, js)
	const rows = 100_000
	e.exec(t, fmt.Sprintf(`INSERT INTO products (supplier_id, sku, name, price)
		SELECT 1 + g %% 2, 'K-' || g, 'product ' || g, g / 100.0 FROM generate_series(1, %d) g`, rows))
	end := e.currentLSN(t)
	testenv.WaitFor(t, "part of the transaction in the stream", 2*time.Minute, func() bool { return streamMsgs(ctx, js) >= 20_000 })
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if n := streamMsgs(ctx, js); n >= rows {
		t.Fatalf("the whole transaction (%d) was in the stream before the kill: the test proves nothing", n)
	}
	if s := e.slot(t); s.ConfirmedLSN >= end {
		t.Fatalf("slot confirmed %s past the unfinished transaction (end %s)", s.ConfirmedLSN, end)
	}
	e.replicate(t)
	testenv.WaitFor(t, "the slot to confirm the transaction", 3*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	events := checkExactlyOnce(t, js, rows)
	for i, c := range events {
		if c.Source.Seq != i {
			t.Fatalf("event %d has seq %d: out of order", i, c.Source.Seq)
		}
	}
}

// TestReplicateSIGTERM: SIGTERM stops it promptly with exit status 0, the final position
// confirmed to the slot and saved in the checkpoint bucket.
func TestReplicateSIGTERM(t *testing.T) {
	t.Parallel()
	e := newReplEnv(t)
	js := e.js(t)
	p := e.replicate(t, "--http-addr", "127.0.0.1:0")
	addr := testenv.OpsAddr(t, p.out)
	testenv.WaitFor(t, "/readyz", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 1, 'S-' || g, 'n' FROM generate_series(1, 1000) g`)
	ctx := testenv.Context(t, time.Minute)
	testenv.WaitFor(t, "the changes in the stream", time.Minute, func() bool { return streamMsgs(ctx, js) >= 1000 })
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	_, _ = metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`tidemark_replication_changes_total{op="insert"} 1000`, "tidemark_commit_to_ack_seconds_bucket", "tidemark_replication_slot_lag_bytes", "tidemark_publish_in_flight", "tidemark_replication_reconnects_total"} {
		if !strings.Contains(metrics.String(), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if err := p.err; err != nil {
			t.Fatalf("exit: %v\n%s", err, p.out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
	t.Logf("stopped in %s", time.Since(start))
	// Confirmed past the transaction's commit record: the commit's end or later. Not the WAL
	// position after the insert, which can hold WAL with no change to publish (an autoanalyze
	// of the 1000 rows) that a replicator stopped within the second need not have seen.
	events := checkExactlyOnce(t, js, 1000)
	commit := pglogrepl.LSN(events[len(events)-1].Source.CommitLSN)
	s := e.slot(t)
	if s.ConfirmedLSN <= commit {
		t.Errorf("slot confirmed %s, want past the transaction's commit at %s", s.ConfirmedLSN, commit)
	}
	cps, err := sink.OpenCheckpoints(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := cps.Load(ctx, "tidemark")
	if err != nil {
		t.Fatal(err)
	}
	if saved != s.ConfirmedLSN {
		t.Errorf("saved checkpoint %s, slot confirmed %s", saved, s.ConfirmedLSN)
	}
}

// TestReplicateNATSRestart: NATS goes away during a load, for longer than the ack timeout,
// and comes back; nothing is lost and nothing doubled. The outage must not be absorbed by
// nats.go's reconnect buffer: transactions commit while NATS is down, their publishes time
// out, and the replicator resumes from the confirmed LSN.
func TestReplicateNATSRestart(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 3*time.Minute)
	p := e.replicate(t) // --ack-timeout 3s
	waitStream(ctx, t, js)
	const txns, per = 100, 20
	const outage = 6 * time.Second // twice the ack timeout
	writerDone := make(chan error, 1)
	go func() {
		for i := 0; i < txns; i++ {
			_, err := e.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO products (supplier_id, sku, name)
				SELECT 2, 'N-%d-' || g, 'n' FROM generate_series(1, %d) g`, i, per))
			if err != nil {
				writerDone <- err
				return
			}
			time.Sleep(40 * time.Millisecond)
		}
		writerDone <- nil
	}()
	testenv.WaitFor(t, "some changes", time.Minute, func() bool { return streamMsgs(ctx, js) >= 200 })
	if n := streamMsgs(ctx, js); n >= txns*per/2 {
		t.Fatalf("%d of %d changes already in the stream: the outage would come too late", n, txns*per)
	}
	down := time.Now()
	e.nats.Shutdown()
	time.Sleep(outage)
	up := time.Now()
	if err := e.nats.Start(); err != nil {
		t.Fatal(err)
	}
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	end := e.currentLSN(t)
	testenv.WaitFor(t, "the slot to confirm every transaction", 2*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	events := checkExactlyOnce(t, js, txns*per)

	// The precondition: changes committed while NATS was down, at least 3s (the ack
	// timeout) before it came back, so their publishes were in flight when the acks failed.
	during := 0
	for _, c := range events {
		if c.Source.CommitTS.After(down) && c.Source.CommitTS.Before(up.Add(-3*time.Second)) {
			during++
		}
	}
	if during == 0 {
		t.Fatalf("no change committed during the first %s of the outage: nothing was in flight", outage-3*time.Second)
	}
	// Not absorbed: the client saw the connection drop, and the session failed and resumed
	// from the confirmed LSN (one reconnect at least), replaying what was not acknowledged.
	out := p.out.String()
	for _, want := range []string{"nats disconnected", "nats reconnected", "replication interrupted; resuming from the confirmed LSN"} {
		if !strings.Contains(out, want) {
			t.Errorf("the replicator's log lacks %q", want)
		}
	}
	t.Logf("%d changes committed during the outage; %d session restarts", during, strings.Count(out, "replication interrupted"))
}

// TestReplicateStandbyTakeover: a second replicator waits while the first holds the slot
// and takes over when it stops.
func TestReplicateStandbyTakeover(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 3*time.Minute)
	first := e.replicate(t)
	first.streaming(t)
	second := e.replicate(t)
	testenv.WaitFor(t, "the second to stand by", 30*time.Second, func() bool {
		return strings.Contains(second.out.String(), "standing by")
	})
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 1, 'A-' || g, 'n' FROM generate_series(1, 100) g`)
	testenv.WaitFor(t, "the first batch", time.Minute, func() bool { return streamMsgs(ctx, js) >= 100 })
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := first.wait(); err != nil {
		t.Fatalf("first exit: %v", err)
	}
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 1, 'B-' || g, 'n' FROM generate_series(1, 100) g`)
	end := e.currentLSN(t)
	testenv.WaitFor(t, "the second to take over", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	if !strings.Contains(second.out.String(), "streaming") {
		t.Error("the second replicator never streamed")
	}
	checkExactlyOnce(t, js, 200)
}

// TestCheckpointCommands: show, set forward, and set backward refused.
func TestCheckpointCommands(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 2*time.Minute)
	p := e.replicate(t)
	p.streaming(t)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'C-1', 'n')`)
	testenv.WaitFor(t, "the change", time.Minute, func() bool { return streamMsgs(ctx, js) >= 1 })
	run := func(args ...string) (string, string, error) {
		cmd := exec.Command(e.bin, append([]string{"checkpoint", "--pg-url", e.url, "--nats-url", e.nats.URL()}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	// Refused while a replicator holds the slot. (Whether the slot moved cannot be told: the
	// running replicator moves it forward itself, past the WAL of other tests' databases too,
	// so the target is well ahead, never behind the slot by the time set reads it.)
	if _, errOut, err := run("set", (e.currentLSN(t) + 1<<30).String()); err == nil || !strings.Contains(errOut, "in use") {
		t.Errorf("set while replicate holds the slot: err %v, stderr %s", err, errOut)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(); err != nil {
		t.Fatal(err)
	}
	rep := showJSON(t, run)
	if rep.Slot != "tidemark" || rep.ConfirmedLSN == "" || rep.SavedLSN != rep.ConfirmedLSN || rep.LostEpochs == nil || len(rep.LostEpochs) != 0 {
		t.Errorf("show: %+v", rep)
	}
	confirmed, _ := pglogrepl.ParseLSN(rep.ConfirmedLSN)
	checkShowListsLostEpochs(ctx, t, e, js, confirmed, run)
	_, errOut, err := run("set", (confirmed - 1).String())
	if err == nil || !strings.Contains(errOut, "backward") {
		t.Errorf("set backward: err %v, stderr %s", err, errOut)
	}
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'C-2', 'n')`)
	target := e.currentLSN(t)
	// Without the bucket (a NATS set up anew), set creates it, as replicate would.
	if err := js.DeleteKeyValue(ctx, sink.CheckpointBucket); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err = run("set", target.String()); err != nil {
		t.Fatalf("set forward: %v\n%s", err, errOut)
	}
	if s := e.slot(t); s.ConfirmedLSN != target {
		t.Errorf("slot at %s after set %s", s.ConfirmedLSN, target)
	}
	cps, err := sink.OpenCheckpoints(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if saved, _ := cps.Load(ctx, "tidemark"); saved != target {
		t.Errorf("saved %s after set %s", saved, target)
	}
	// Resuming skips what set jumped over: C-2 never reaches the stream.
	e.replicate(t)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'C-3', 'n')`)
	end := e.currentLSN(t)
	testenv.WaitFor(t, "C-3", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	_, events := readStream(t, js)
	var skus []string
	for _, c := range events {
		v, _ := c.After.Get("sku")
		skus = append(skus, string(v))
	}
	if strings.Join(skus, ",") != `"C-1","C-3"` {
		t.Errorf("stream skus %v, want C-1 and C-3 (confirmed was %s, set to %s)", skus, confirmed, target)
	}
}

// showJSON runs checkpoint show --json.
func showJSON(t *testing.T, run func(args ...string) (string, string, error)) checkpointReport {
	t.Helper()
	out, errOut, err := run("show", "--json")
	if err != nil {
		t.Fatalf("show: %v\n%s", err, errOut)
	}
	var rep checkpointReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	return rep
}

// checkShowListsLostEpochs: checkpoint show lists the snapshot epochs saved as lost, with the
// snapshot that repairs each: one finished since the loss, and only such a one.
func checkShowListsLostEpochs(ctx context.Context, t *testing.T, e *replEnv, js jetstream.JetStream, at pglogrepl.LSN,
	run func(args ...string) (string, string, error)) {
	t.Helper()
	cps, err := sink.OpenCheckpoints(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	lsn := event.LSN(at)
	lost := []replication.LostEpoch{
		{ID: "s5-a.1", Supplier: 5, Lost: lsn},
		{ID: "s6-b.2", Supplier: 6, Lost: lsn, Closed: lsn + 0x100},
		{ID: "s7-c.3", Lost: lsn},
	}
	if err := cps.SaveLostEpochs(ctx, "tidemark", lost); err != nil {
		t.Fatal(err)
	}
	// Supplier 5 was snapshotted before the loss only; supplier 6 after it too, and a later
	// snapshot of 6 is still running (removed before replicate runs again, which would run it).
	e.exec(t, fmt.Sprintf(`INSERT INTO tidemark_snapshots (id, supplier_id, until_id, finished_at, epoch_id, open_lsn) VALUES
		('s5-old', 5, 0, now(), 's5-old.1', '%[1]s'::pg_lsn - 1),
		('s6-running', 6, 0, NULL, 's6-running.7', '%[1]s'::pg_lsn + 1),
		('s6-new', 6, 0, now(), 's6-new.9', '%[1]s'::pg_lsn + 2)`, at))
	defer e.exec(t, `DELETE FROM tidemark_snapshots WHERE id = 's6-running'`)
	rep := showJSON(t, run)
	if len(rep.LostEpochs) != 3 || rep.LostEpochsError != "" {
		t.Fatalf("show lists %d lost epochs (%s), want 3: %+v", len(rep.LostEpochs), rep.LostEpochsError, rep)
	}
	s5, s6, s7 := rep.LostEpochs[0], rep.LostEpochs[1], rep.LostEpochs[2]
	if s5.ID != "s5-a.1" || s5.Supplier != 5 || s5.LostLSN != at.String() || s5.DroppedCloseLSN != "" || s5.Resnapshot != nil {
		t.Errorf("supplier 5 (not snapshotted since): %+v", s5)
	}
	if s6.DroppedCloseLSN != (at+0x100).String() || s6.Resnapshot == nil || s6.Resnapshot.Epoch != "s6-new.9" || s6.ResnapshotError != "" {
		t.Errorf("supplier 6 (snapshotted since): %+v", s6)
	}
	if s7.Supplier != 0 || s7.Resnapshot != nil || s7.ResnapshotError != "" {
		t.Errorf("unknown supplier: %+v", s7)
	}
	text, errOut, err := run("show")
	if err != nil {
		t.Fatalf("show: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"lost epochs:   3 snapshot epochs lost a chunk",
		"supplier 5, epoch s5-a.1: chunk lost at " + at.String() + ", close not yet replicated; run: tidemark snapshot --supplier 5 --new-epoch",
		"supplier 6, epoch s6-b.2: chunk lost at " + at.String() + ", close dropped at " + (at + 0x100).String() + "; snapshotted again since (epoch s6-new.9, finished ",
		"supplier unknown, epoch s7-c.3",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("show does not say %q:\n%s", want, text)
		}
	}
}

// tail runs tidemark tail with args until it has printed want, then stops it with SIGINT and
// returns what it printed.
func (e *replEnv) tail(ctx context.Context, t *testing.T, what, want string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"tail", "--nats-url", e.nats.URL()}, args...)...)
	var stdout sandbox.Output
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, what, 30*time.Second, func() bool { return strings.Contains(stdout.String(), want) })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("tail exit: %v", err)
	}
	return stdout.String()
}

// TestReplicateStopAtLSN: --stop-at-lsn stops replicate with exit status 0 once everything up
// to the LSN is confirmed to the slot and saved in the checkpoint bucket.
func TestReplicateStopAtLSN(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 2*time.Minute)
	p := e.replicate(t)
	p.streaming(t)
	stop(t, p)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 1, 'L-' || g, 'n' FROM generate_series(1, 100) g`)
	at := e.currentLSN(t)
	code, out := e.replicateExit(t, "--stop-at-lsn", at.String())
	if code != 0 || !strings.Contains(out, "reached --stop-at-lsn") {
		t.Fatalf("replicate --stop-at-lsn %s exited %d:\n%s", at, code, out)
	}
	s := e.slot(t)
	if s.ConfirmedLSN < at {
		t.Errorf("slot confirmed %s, before --stop-at-lsn %s", s.ConfirmedLSN, at)
	}
	cps, err := sink.OpenCheckpoints(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if saved, err := cps.Load(ctx, "tidemark"); err != nil || saved != s.ConfirmedLSN {
		t.Errorf("saved checkpoint %s (%v), slot confirmed %s", saved, err, s.ConfirmedLSN)
	}
	checkExactlyOnce(t, js, 100)
}

// TestReplicateFromLSN: --from-lsn starts one run further on than the slot and the saved
// checkpoint: the transactions committed before it are skipped, those after it published, and
// the slot confirms past it.
func TestReplicateFromLSN(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 2*time.Minute)
	e.seedReplicated(t, 10)
	before := streamMsgs(ctx, js) // the seed's snapshot and its epochs
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 1, 'SKIP-' || g, 'n' FROM generate_series(1, 20) g`)
	from := e.currentLSN(t)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 2, 'KEEP-' || g, 'n' FROM generate_series(1, 5) g`)
	end := e.currentLSN(t)
	p := e.replicate(t, "--from-lsn", from.String())
	testenv.WaitFor(t, "the slot to confirm the last insert", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	stop(t, p)
	var kept int
	for _, c := range checkExactlyOnce(t, js, int(before)+5) {
		switch sku, _ := c.After.Get("sku"); {
		case strings.HasPrefix(string(sku), `"SKIP-`):
			t.Fatalf("a change before --from-lsn %s was published: %s", from, sku)
		case strings.HasPrefix(string(sku), `"KEEP-`):
			kept++
		}
	}
	if kept != 5 {
		t.Errorf("%d changes after --from-lsn published, want 5", kept)
	}
}

// TestTail prints events as JSON lines.
func TestTail(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, time.Minute)
	e.replicate(t).streaming(t)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (2, 'T-1', 'tail me')`)
	testenv.WaitFor(t, "the change", time.Minute, func() bool { return streamMsgs(ctx, js) >= 1 })
	out := e.tail(ctx, t, "a line", "\n", "--from-start", "products.2.>")
	line, _, _ := strings.Cut(out, "\n")
	var c event.Change
	if err := json.Unmarshal([]byte(line), &c); err != nil {
		t.Fatalf("tail printed %q: %v", line, err)
	}
	if c.Op != event.OpInsert || c.Key.SupplierID != 2 {
		t.Errorf("tail printed %+v", c)
	}
}

// TestStreamFlagNamesOneStreamForEveryCommand: replicate, encode and tail given the same
// --stream work on that stream, and none creates or waits for PRODUCTS.
func TestStreamFlagNamesOneStreamForEveryCommand(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 2*time.Minute)
	e.replicate(t, "--stream", "CATALOGUE").streaming(t)
	e.start(t, "encode", "--http-addr=", "--stream", "CATALOGUE", "--batch-wait", "100ms")
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'S-1', 'Red wool scarf')`)
	testenv.WaitFor(t, "the vector", time.Minute, func() bool {
		var n int
		err := e.pool.QueryRow(ctx, "SELECT count(*) FROM product_embeddings WHERE NOT deleted").Scan(&n)
		return err == nil && n == 1
	})
	if _, err := js.Stream(ctx, event.Stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream PRODUCTS: %v, want it not to exist", err)
	}
	e.tail(ctx, t, "tail to print the change", "Red wool scarf", "--stream", "CATALOGUE", "--from-start")
}

// TestReplicateDebezium: --format debezium publishes the Debezium envelope on the same
// subjects and ids.
func TestReplicateDebezium(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, time.Minute)
	e.replicate(t, "--format", "debezium").streaming(t)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name, price) VALUES (2, 'D-1', 'deb', 1.50)`)
	e.exec(t, `DELETE FROM products WHERE sku = 'D-1'`)
	testenv.WaitFor(t, "two changes", time.Minute, func() bool { return streamMsgs(ctx, js) >= 2 })
	s, err := js.Stream(ctx, event.Stream)
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]string{1: "c", 2: "d"} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Op     string          `json:"op"`
			Before json.RawMessage `json:"before"`
			After  json.RawMessage `json:"after"`
			Source struct {
				Connector string `json:"connector"`
				Table     string `json:"table"`
			} `json:"source"`
		}
		if err := json.Unmarshal(m.Data, &env); err != nil {
			t.Fatalf("%s: %v", m.Data, err)
		}
		if env.Op != want || env.Source.Connector != "postgresql" || env.Source.Table != "products" {
			t.Errorf("message %d: %s", seq, m.Data)
		}
		if want := "products.2." + map[string]string{"c": "insert", "d": "delete"}[want]; m.Subject != want {
			t.Errorf("subject %s, want %s", m.Subject, want)
		}
	}
}

// TestReplicateWALLevelReplica: a server without logical decoding gets a clear error
// naming wal_level, and a non-zero exit.
func TestReplicateWALLevelReplica(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t, sandbox.PostgresOptions{Settings: map[string]string{"wal_level": "replica", "max_wal_senders": "2", "max_replication_slots": "2"}})
	n := testenv.NATS(t)
	cmd := exec.Command(testenv.Binary(t), "replicate", "--pg-url", pg.URL("postgres"), "--nats-url", n.URL(), "--http-addr=")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("replicate succeeded against wal_level=replica:\n%s", out)
	}
	if !strings.Contains(string(out), "wal_level") || !strings.Contains(string(out), "logical") {
		t.Errorf("the error does not explain wal_level:\n%s", out)
	}
}
