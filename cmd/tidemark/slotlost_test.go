package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/health"
	"github.com/tidemark/tidemark/internal/sandbox"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/sink"
)

// gapChanges inserts, updates and deletes products while no slot takes their changes, and
// returns the keys of the updated and of the deleted products.
func (e *replEnv) gapChanges(t *testing.T) (updated, deleted []event.Key) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name, price)
		SELECT 1 + g % 2, 'GAP-' || g, 'added in the gap ' || g, g FROM generate_series(1, 50) g`)
	for _, q := range []struct {
		sql  string
		keys *[]event.Key
	}{
		{`UPDATE products SET name = 'renamed in the gap ' || id WHERE id IN
			(SELECT id FROM products WHERE sku LIKE 'S-%' ORDER BY id LIMIT 50) RETURNING supplier_id, id`, &updated},
		{`DELETE FROM products WHERE id IN
			(SELECT id FROM products WHERE sku LIKE 'S-%' ORDER BY id DESC LIMIT 50) RETURNING supplier_id, id`, &deleted},
	} {
		rows, err := e.pool.Query(ctx, q.sql)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k event.Key
			if err := rows.Scan(&k.SupplierID, &k.ID); err != nil {
				t.Fatal(err)
			}
			*q.keys = append(*q.keys, k)
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
	}
	return updated, deleted
}

// streamNames replays the stream from the start as a subscriber keeping state would, without
// epochs: the last name of every product, removed by its delete.
func streamNames(t *testing.T, events []event.Change) map[event.Key]string {
	t.Helper()
	state := map[event.Key]string{}
	for _, c := range events {
		switch c.Op {
		case event.OpDelete:
			delete(state, c.Key)
		case event.OpInsert, event.OpUpdate, event.OpSnapshot:
			raw, ok := c.After.Get("name")
			if !ok {
				t.Fatalf("%s event of %v without a name", c.Op, c.Key)
			}
			var name string
			if err := json.Unmarshal(raw, &name); err != nil {
				t.Fatal(err)
			}
			state[c.Key] = name
		}
	}
	return state
}

// checkConverged checks every product in the table has its current name as its last event in
// the stream, and that the gap's updates reached the stream as snapshot rows only: as update
// events they would mean the slot never lost them, and the test proved nothing. (That deleted
// products also leave the subscriber's state needs snapshot epochs, tested with them.)
func (e *replEnv) checkConverged(t *testing.T, js jetstream.JetStream, updated []event.Key) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	_, events := readStream(t, js)
	state := streamNames(t, events)
	rows, err := e.pool.Query(ctx, "SELECT supplier_id, id, name FROM products")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var k event.Key
		var name string
		if err := rows.Scan(&k.SupplierID, &k.ID, &name); err != nil {
			t.Fatal(err)
		}
		n++
		if got, ok := state[k]; !ok || got != name {
			t.Errorf("product %v is %q in the table, %q (present %v) in the stream", k, name, got, ok)
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	gap := map[event.Key]bool{}
	for _, k := range updated {
		gap[k] = true
	}
	for _, c := range events {
		if c.Op == event.OpUpdate && gap[c.Key] {
			if raw, _ := c.After.Get("name"); strings.Contains(string(raw), "renamed in the gap") {
				t.Fatalf("the gap's update of %v reached the stream as an update: the slot lost nothing, the test proves nothing", c.Key)
			}
		}
	}
	t.Logf("%d products, %d events: converged", n, len(events))
}

// replicateExit runs replicate to its end and returns its exit code and output.
func (e *replEnv) replicateExit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	p := e.replicate(t, args...)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("replicate still runs after a minute:\n%s", p.out.String())
	}
	var exit *exec.ExitError
	if !errors.As(p.err, &exit) {
		return 0, p.out.String()
	}
	return exit.ExitCode(), p.out.String()
}

// wantSlotLostExit checks replicate exited 5 saying why, from where changes are missing and
// what to run.
func wantSlotLostExit(t *testing.T, code int, out, reason string, from pglogrepl.LSN) {
	t.Helper()
	if code != exitSlotLost {
		t.Fatalf("replicate exited %d, want %d:\n%s", code, exitSlotLost, out)
	}
	for _, want := range []string{"lost (" + reason, fmt.Sprintf("changes committed after %s", from), "tidemark replicate --on-slot-lost resync",
		"reason=" + reason} {
		if !strings.Contains(out, want) {
			t.Errorf("replicate's output lacks %q:\n%s", want, out)
		}
	}
}

func (e *replEnv) seed(t *testing.T, n int) {
	t.Helper()
	e.exec(t, fmt.Sprintf(`INSERT INTO products (supplier_id, sku, name, price)
		SELECT 1 + g %% 2, 'S-' || g, 'product ' || g, g / 100.0 FROM generate_series(1, %d) g`, n))
}

// seedReplicated seeds rows products and runs replicate until its first snapshot of the
// seeded suppliers is done and the slot has confirmed it all, then stops it cleanly. (Stopped
// before the snapshot was done, the next replicate would snapshot a supplier again.)
func (e *replEnv) seedReplicated(t *testing.T, rows int) {
	t.Helper()
	e.seed(t, rows)
	p := e.replicate(t)
	p.streaming(t)
	testenv.WaitFor(t, "the first snapshot", time.Minute, func() bool { return strings.Contains(p.out.String(), "snapshot done") })
	end := e.currentLSN(t)
	testenv.WaitFor(t, "the seed confirmed", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Fatalf("replicate: %v", err)
	}
}

// wantLostSaid checks that status and doctor find the slot lost for reason, as replicate
// decides it, or, reason "", not lost.
func (e *replEnv) wantLostSaid(t *testing.T, reason string) {
	t.Helper()
	stdout, stderr, code := runTidemark(t, e.url, e.nats.URL(), "status", "--json")
	var st struct {
		SlotLost string   `json:"slot_lost"`
		Healthy  bool     `json:"healthy"`
		Problems []string `json:"problems"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s%s", err, stdout, stderr)
	}
	checks, _, _, _ := runDoctor(t, e.url, e.nats.URL())
	if reason == "" {
		if st.SlotLost != "" {
			t.Errorf("a slot that is not lost: status slot_lost %q %v", st.SlotLost, st.Problems)
		}
		wantCheck(t, checks, "slot", health.OK, "tidemark")
		return
	}
	if code == 0 || st.Healthy {
		t.Errorf("status exits %d, healthy %v, with the slot lost (%s)", code, st.Healthy, reason)
	}
	if st.SlotLost != reason || !slices.ContainsFunc(st.Problems, func(p string) bool { return strings.Contains(p, "is lost: "+reason) }) {
		t.Errorf("status slot_lost %q %v, want %s", st.SlotLost, st.Problems, reason)
	}
	wantCheck(t, checks, "slot", health.Fail, "is lost")
	if c := checks["slot"]; !strings.Contains(c.Detail, reason) || !strings.Contains(c.Fix, "--on-slot-lost resync") {
		t.Errorf("doctor's slot check %+v, want it lost: %s, and the resync", c, reason)
	}
}

// TestSlotInvalidated: with max_slot_wal_keep_size small, a stopped replicator's slot is
// invalidated by WAL written meanwhile and a CHECKPOINT. status and doctor say so; replicate
// (fail, the default) exits 5 naming the LSN from which changes are missing and the command;
// replicate --on-slot-lost resync re-creates the slot and snapshots every supplier, and the
// stream converges on the table: inserts, updates (and, with epochs, deletes) of the gap.
func TestSlotInvalidated(t *testing.T) {
	t.Parallel()
	pg := testenv.Postgres(t, sandbox.PostgresOptions{Settings: map[string]string{"max_slot_wal_keep_size": "1MB"}})
	e := newReplEnvAt(t, testenv.DatabaseIn(t, pg))
	js := e.js(t)
	e.seedReplicated(t, 400)
	confirmed := e.slot(t).ConfirmedLSN

	updated, _ := e.gapChanges(t)
	e.exec(t, "CREATE TABLE filler (x text)")
	testenv.WaitFor(t, "the slot to be invalidated", 2*time.Minute, func() bool {
		e.exec(t, "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
		e.exec(t, "SELECT pg_switch_wal()")
		e.exec(t, "CHECKPOINT")
		return e.slot(t).WALStatus == "lost"
	})

	e.wantLostSaid(t, "invalidated")

	code, log := e.replicateExit(t)
	wantSlotLostExit(t, code, log, "invalidated", confirmed)

	p := e.replicate(t, "--on-slot-lost", "resync", "--http-addr", "127.0.0.1:0")
	addr := testenv.OpsAddr(t, p.out)
	testenv.WaitFor(t, "the resync to finish", 2*time.Minute, func() bool { return strings.Contains(p.out.String(), "resync done") })
	e.exec(t, "UPDATE products SET name = 'renamed after the resync' WHERE sku = 'S-200'")
	end := e.currentLSN(t)
	testenv.WaitFor(t, "the slot to confirm the resync", 2*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	page := scrape(t, addr)
	if v := metricValue(page, `tidemark_replication_slot_lost_total{reason="invalidated"}`); v != 1 {
		t.Errorf("slot_lost_total{invalidated} = %v, want 1", v)
	}
	if v := metricValue(page, "tidemark_replication_resyncs_total"); v != 1 {
		t.Errorf("resyncs_total = %v, want 1", v)
	}
	e.checkConverged(t, js, updated)
	if s := e.slot(t); s.Invalidated() {
		t.Errorf("the new slot is invalidated: %+v", s)
	}
}

// TestSlotDroppedMidSessionKill9 drops the slot of a running replicator (stopped with SIGSTOP,
// its walsender terminated, then the gap's changes made): the session detects it and, with
// --on-slot-lost resync, re-creates the slot and snapshots. Killed with SIGKILL in the middle
// of that snapshot, the restarted replicator finishes it and the stream converges.
func TestSlotDroppedMidSessionKill9(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 5*time.Minute)
	const rows = 10_000
	e.seed(t, rows)
	// Chunks of 50 rows: about 200 of them, so that the resync's snapshot is still running
	// when the test sees its eighth (an idle machine writes 10,000 rows in well under 0.1s).
	const chunk = 50
	args := []string{"--on-slot-lost", "resync", "--snapshot-chunk", strconv.Itoa(chunk)}
	p := e.replicate(t, append(args, "--snapshot", "never")...)
	p.streaming(t)
	end := e.currentLSN(t)
	testenv.WaitFor(t, "the seed confirmed", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })

	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Dropped before the gap's changes, so that no walsender decodes them.
	testenv.WaitFor(t, "the slot dropped", time.Minute, func() bool {
		_, err := e.pool.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE slot_name = 'tidemark' AND active_pid IS NOT NULL`)
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.pool.Exec(ctx, "SELECT pg_drop_replication_slot('tidemark')")
		return err == nil
	})
	updated, _ := e.gapChanges(t)
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	chunks := func() int { return e.snapshotChunks(ctx, t, true) }
	testenv.WaitFor(t, "the resync's snapshot under way", time.Minute, func() bool {
		return strings.Contains(p.out.String(), "reason=dropped") && chunks() >= 8
	})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if n := chunks(); n == 0 || n*chunk >= rows {
		t.Fatalf("%d chunks of the resync's snapshot written at the kill: the test proves nothing", n)
	}

	p = e.replicate(t, args...)
	testenv.WaitFor(t, "the snapshot to finish", 3*time.Minute, func() bool {
		var open int
		if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM tidemark_snapshots WHERE finished_at IS NULL").Scan(&open); err != nil {
			t.Fatal(err)
		}
		return open == 0
	})
	end = e.currentLSN(t)
	testenv.WaitFor(t, "the slot to confirm the snapshot", 2*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	if strings.Contains(p.out.String(), "slot lost") {
		t.Errorf("the restart found the new slot lost:\n%s", p.out.String())
	}
	e.checkConverged(t, js, updated)
}

// TestSlotNewPrimary: a checkpoint taken on another server (a failover: another system
// identifier or timeline) or, where the server is not known, ahead of the slot's confirmed
// LSN, is a lost slot: replicate fails with exit 5. The same checkpoint ahead on the same
// server is what a PostgreSQL crash leaves (confirmed_flush_lsn is persisted at checkpoints)
// and streams on.
func TestSlotNewPrimary(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 5*time.Minute)
	e.seedReplicated(t, 100)
	kv, err := js.KeyValue(ctx, sink.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	origin, err := kv.Get(ctx, "tidemark.origin")
	if err != nil {
		t.Fatalf("no origin saved beside the checkpoint: %v", err)
	}
	// WAL past the slot, none of it published: where a crash can leave the checkpoint.
	e.exec(t, "CREATE TABLE unpublished AS SELECT g FROM generate_series(1, 10000) g")
	ahead := e.currentLSN(t)
	if s := e.slot(t); s.ConfirmedLSN >= ahead {
		t.Fatalf("slot confirmed %s, not behind %s", s.ConfirmedLSN, ahead)
	}

	// The same server, the checkpoint ahead: not lost.
	if _, err := kv.Put(ctx, "tidemark", []byte(ahead.String())); err != nil {
		t.Fatal(err)
	}
	e.wantLostSaid(t, "")
	p := e.replicate(t)
	p.streaming(t)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil || strings.Contains(p.out.String(), "slot lost") {
		t.Fatalf("replicate on the same server with the checkpoint ahead: %v\n%s", err, p.out.String())
	}

	// Another server.
	if _, err := kv.Put(ctx, "tidemark.origin", []byte("7000000000000000001/1")); err != nil {
		t.Fatal(err)
	}
	saved, err := kv.Get(ctx, "tidemark")
	if err != nil {
		t.Fatal(err)
	}
	savedLSN, _ := pglogrepl.ParseLSN(string(saved.Value()))
	e.wantLostSaid(t, "new_primary")
	code, out := e.replicateExit(t)
	wantSlotLostExit(t, code, out, "new_primary", savedLSN)

	// A role that cannot read this server's origin cannot tell: status and doctor say so,
	// neither calls the slot healthy. (Function privileges belong to the database.)
	e.exec(t, "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
	_, monitorURL := testenv.Role(ctx, t, e.pool, "monitor")
	stdout, stderr, code := runTidemark(t, monitorURL, e.nats.URL(), "status", "--json")
	if code == 0 || !strings.Contains(stdout, "cannot tell whether slot tidemark is on the server its checkpoint was taken on (7000000000000000001/1)") ||
		!strings.Contains(stdout, "permission denied for function pg_control_system") {
		t.Errorf("status as a role without pg_control_system: exit %d\n%s%s", code, stdout, stderr)
	}
	checks, _, _, _ := runDoctor(t, monitorURL, e.nats.URL())
	wantCheck(t, checks, "slot", health.Warn, "cannot tell whether it is on the server the checkpoint was taken on (7000000000000000001/1)")
	// A warning that holds whichever server this is comes first: the slot retains more WAL
	// than --lag-warn (the unpublished table's, above).
	checks, _, _, _ = runDoctor(t, monitorURL, e.nats.URL(), "--lag-warn", "1")
	wantCheck(t, checks, "slot", health.Warn, "(over 1 B)")
	e.exec(t, "GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC")

	// No origin known, the checkpoint ahead of the slot.
	if err := kv.Delete(ctx, "tidemark.origin"); err != nil {
		t.Fatal(err)
	}
	e.exec(t, "INSERT INTO unpublished SELECT g FROM generate_series(1, 10000) g")
	ahead = e.currentLSN(t)
	if _, err := kv.Put(ctx, "tidemark", []byte(ahead.String())); err != nil {
		t.Fatal(err)
	}
	e.wantLostSaid(t, "behind_checkpoint")
	code, out = e.replicateExit(t)
	wantSlotLostExit(t, code, out, "behind_checkpoint", ahead)
	if string(origin.Value()) == "" {
		t.Error("empty origin")
	}
}

// TestResyncKilledBeforeItsSlot: a resync killed with SIGKILL after it recorded the snapshot of
// every supplier and before its new slot existed (the slot's creation held up by a transaction
// running meanwhile, its backend then gone too) leaves the slot lost: the restart finds it
// lost again, starts the resync over, and the stream converges on the table.
func TestResyncKilledBeforeItsSlot(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 4*time.Minute)
	e.seedReplicated(t, 400)
	var dropped time.Time
	if err := e.pool.QueryRow(ctx, "SELECT now() FROM pg_drop_replication_slot('tidemark')").Scan(&dropped); err != nil {
		t.Fatal(err)
	}
	updated, _ := e.gapChanges(t)

	// A transaction with an xid, open while the slot is created: PostgreSQL builds the new
	// slot's snapshot only once it ends.
	blocker, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = blocker.Rollback(ctx) }()
	if _, err := blocker.Exec(ctx, "SELECT txid_current()"); err != nil {
		t.Fatal(err)
	}
	p := e.replicate(t, "--on-slot-lost", "resync")
	var creator int32
	testenv.WaitFor(t, "the resync to create its slot", time.Minute, func() bool {
		err := e.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE '%pg_create_logical_replication_slot%'
			  AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`).Scan(&creator)
		return err == nil
	})
	kill9(t, p)
	var recorded int
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM tidemark_snapshots WHERE finished_at IS NULL AND started_at > $1", dropped).Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	if recorded != 2 {
		t.Fatalf("%d snapshots recorded by the resync at the kill, want 2, one per supplier", recorded)
	}
	// The killed replicator's backend would create the slot once the blocker ends: it goes too,
	// as when the database connection is lost with the process.
	e.exec(t, fmt.Sprintf("SELECT pg_terminate_backend(%d)", creator))
	testenv.WaitFor(t, "the half-made slot gone", 30*time.Second, func() bool {
		var n int
		err := e.pool.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tidemark'").Scan(&n)
		return err == nil && n == 0
	})
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	p = e.replicate(t, "--on-slot-lost", "resync")
	testenv.WaitFor(t, "the resync to finish", 2*time.Minute, func() bool { return strings.Contains(p.out.String(), "resync done") })
	if out := p.out.String(); !strings.Contains(out, "replication slot lost") || !strings.Contains(out, "reason=dropped") {
		t.Errorf("the restart did not find the slot lost again:\n%s", out)
	}
	e.exec(t, "UPDATE products SET name = 'renamed after the resync' WHERE sku = 'S-200'")
	end := e.currentLSN(t)
	testenv.WaitFor(t, "the slot to confirm the resync", 2*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	e.checkConverged(t, js, updated)
}
