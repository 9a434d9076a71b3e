package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/replication"
)

// epochEnv is a pipeline (replicate and encode, as processes of the built binary) whose
// products of supplier 1 lost some deletes: they were deleted while the replicator was
// stopped and the slot was then moved past them, as when a slot is lost and re-created.
type epochEnv struct {
	*replEnv
	repl    *proc
	lost    []int64 // ids of supplier 1 whose deletes never reached the stream
	markers int
}

// newEpochPipeline starts replicate and encode on products rows of suppliers 1 and 2 and
// waits until the encoders have settled them; nothing is lost yet.
func newEpochPipeline(t *testing.T, products int) *epochEnv {
	t.Helper()
	e := &epochEnv{replEnv: newReplEnv(t)}
	e.repl = e.replicate(t)
	e.repl.streaming(t)
	e.start(t, "encode", "--http-addr=", "--batch-wait", "100ms", "--ack-wait", "5s")
	e.exec(t, fmt.Sprintf(`INSERT INTO products (supplier_id, sku, name, description, price, currency, attributes)
		SELECT 1 + g %% 2, 'EP-' || g,
		       (ARRAY['Nordby oak table', 'Kaska wool throw', 'Umbra floor lamp', 'Lisboa linen shirt'])[1 + g %% 4] || ' ' || g,
		       'Oiled by hand in Malmö; ships flat. Batch ' || (g / 50) || '.', 10 + g %% 90, 'EUR',
		       jsonb_build_object('colour', (ARRAY['natural', 'smoke', 'white'])[1 + g %% 3], 'width_cm', 40 + g %% 160)
		FROM generate_series(1, %d) g`, products))
	e.settle(t)
	return e
}

func newEpochEnv(t *testing.T) *epochEnv {
	t.Helper()
	e := newEpochPipeline(t, 3000)
	checkVectorsMatchProducts(testenv.Context(t, time.Minute), t, e.replEnv, 0)

	// Stop replicating, delete, and skip the slot past the deletes.
	if err := e.repl.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := e.repl.wait(); err != nil {
		t.Fatalf("replicate after SIGTERM: %v", err)
	}
	ctx := testenv.Context(t, time.Minute)
	if e.lost = e.deleteIDs(t, `DELETE FROM products WHERE supplier_id = 1 AND id % 17 = 0 RETURNING id`); len(e.lost) < 50 {
		t.Fatalf("deleted %d products, want 50 or more", len(e.lost))
	}
	end := e.currentLSN(t)
	if _, err := e.pool.Exec(ctx, "SELECT pg_replication_slot_advance('tidemark', $1::text::pg_lsn)", end.String()); err != nil {
		t.Fatal(err)
	}
	e.repl = e.replicate(t)
	e.repl.streaming(t)
	e.settle(t)
	// The precondition: the deletes are lost, the vectors of those products still live.
	if n := e.liveVectors(t, e.lost); n != len(e.lost) {
		t.Fatalf("%d of the %d products deleted in the gap have live vectors; want all (the deletes must be lost)", n, len(e.lost))
	}
	return e
}

// deleteIDs runs a DELETE … RETURNING id and returns the ids.
func (e *epochEnv) deleteIDs(t *testing.T, sql string) []int64 {
	t.Helper()
	return testenv.Column[int64](testenv.Context(t, time.Minute), t, e.pool, sql)
}

// settle waits until the stream holds everything written so far (a marker product of
// supplier 2 arrives: the slot's confirmed LSN may rightly stay behind, held by the open window
// of a killed snapshot) and the encoders have acknowledged every message of it.
func (e *epochEnv) settle(t *testing.T) {
	t.Helper()
	ctx := testenv.Context(t, 3*time.Minute)
	e.markers++
	sku := fmt.Sprint("MARK-", e.markers)
	e.exec(t, fmt.Sprintf(`INSERT INTO products (supplier_id, sku, name, description) VALUES (2, '%s', 'Marker crate', 'Pine.')`, sku))
	js := e.js(t)
	s, err := js.Stream(ctx, event.Stream)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	testenv.WaitFor(t, "the marker in the stream", 2*time.Minute, func() bool {
		m, err := s.GetLastMsgForSubject(ctx, "products.2.insert")
		if err != nil {
			return false
		}
		c, err := event.Decode(m.Data)
		if err != nil {
			return false
		}
		v, _ := c.After.Get("sku")
		last = m.Sequence
		return string(v) == `"`+sku+`"`
	})
	testenv.WaitFor(t, "the encoders to settle the stream", 2*time.Minute, func() bool {
		c, err := js.Consumer(ctx, event.Stream, "encoders")
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.AckFloor.Stream >= last && ci.NumAckPending == 0
	})
}

// liveVectors counts the live vectors among supplier 1's products ids.
func (e *epochEnv) liveVectors(t *testing.T, ids []int64) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM product_embeddings
		WHERE supplier_id = 1 AND product_id = ANY($1) AND NOT deleted`, ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// tombstonedProducts counts the products that exist and whose vector is a tombstone.
func (e *epochEnv) tombstonedProducts(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM product_embeddings v
		JOIN products p ON p.supplier_id = v.supplier_id AND p.id = v.product_id WHERE v.deleted`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// writer changes supplier 1's products until stop is called: updates, inserts and deletes by
// live transactions, which run during the snapshot's epoch.
func (e *epochEnv) writer(t *testing.T) (stop func()) {
	return testenv.Churn{Supplier: 1, Seed: 7, Pause: 3 * time.Millisecond,
		ID: func(rng *rand.Rand) int64 { return 2 * (rng.Int64N(1500) + 1) }, // supplier 1 holds the even ids of the first 3000
	}.Start(t, e.pool)
}

// replay is a subscriber written with package event: it reads the stream from its start in
// order and keeps the current row of every product; with epochs it honours their closes.
func replay(t *testing.T, events []event.Change, epochs bool) map[event.Key]string {
	t.Helper()
	products := map[event.Key]string{}
	applied := map[event.Key]event.Position{}
	for _, c := range events {
		pos := c.Position()
		if last, ok := applied[c.Key]; ok && pos.Compare(last) <= 0 {
			continue
		}
		switch c.Op {
		case event.OpDelete:
			delete(products, c.Key)
		case event.OpTruncate:
			clear(products)
		case event.OpEpochOpen:
		case event.OpEpochClose:
			if !epochs {
				continue
			}
			for k := range products {
				if k.SupplierID == c.Epoch.SupplierID && c.Epoch.Stale(applied[k]) {
					delete(products, k)
				}
			}
		default:
			name, _ := c.After.Get("name")
			var s string
			_ = json.Unmarshal(name, &s)
			products[c.Key] = s
		}
		applied[c.Key] = pos
	}
	return products
}

// tableNames is the name of every product in the table.
func (e *epochEnv) tableNames(t *testing.T) map[event.Key]string {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), "SELECT supplier_id, id, name FROM products")
	if err != nil {
		t.Fatal(err)
	}
	out := map[event.Key]string{}
	for rows.Next() {
		var k event.Key
		var name string
		if err := rows.Scan(&k.SupplierID, &k.ID, &name); err != nil {
			t.Fatal(err)
		}
		out[k] = name
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return out
}

// diff says how a subscriber's copy differs from the table ("" when it does not).
func diff(got, want map[event.Key]string) string {
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			return fmt.Sprintf("product %v: copy has %q (present %v), table %q", k, g, ok, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Sprintf("product %v is in the copy, not in the table (%d in the copy, %d in the table)", k, len(got), len(want))
		}
	}
	return ""
}

// checkConverged checks the vector table and a subscriber replaying the stream from its start
// against the table, and that a subscriber ignoring epochs would not have converged.
func (e *epochEnv) checkConverged(t *testing.T) {
	t.Helper()
	_, events := readStream(t, e.js(t))
	seen := map[event.Key]bool{}
	for _, c := range events {
		if c.Op != event.OpEpochOpen && c.Op != event.OpEpochClose {
			seen[c.Key] = true
		}
	}
	table := e.tableNames(t)
	gone := 0
	for k := range seen {
		if _, ok := table[k]; !ok {
			gone++
		}
	}
	checkVectorsMatchProducts(testenv.Context(t, time.Minute), t, e.replEnv, gone)
	if d := diff(replay(t, events, true), table); d != "" {
		t.Errorf("a subscriber honouring epochs, replaying the stream from the start: %s", d)
	}
	if diff(replay(t, events, false), table) == "" {
		t.Error("a subscriber ignoring epochs converged too: the lost deletes were not lost")
	}
}

// TestSnapshotEpochRepairsLostDeletesVectors: products deleted while nothing replicated them
// keep their vectors (and their place in every subscriber's copy) until `tidemark snapshot
// --supplier` runs; its epoch's close tombstones them, while a writer keeps updating,
// inserting and deleting the supplier's products during the epoch. Then the vectors equal the
// products, and a subscriber replaying the stream from its start ends with the table's rows.
func TestSnapshotEpochRepairsLostDeletesVectors(t *testing.T) {
	t.Parallel()
	e := newEpochEnv(t)
	stop := e.writer(t)
	out, err := exec.Command(e.bin, "snapshot", "--pg-url", e.url, "--supplier", "1", "--chunk-size", "200").CombinedOutput()
	stop()
	if err != nil {
		t.Fatalf("tidemark snapshot: %v\n%s", err, out)
	}
	e.settle(t)
	if n := e.liveVectors(t, e.lost); n != 0 {
		t.Errorf("%d of the %d products deleted in the gap still have live vectors", n, len(e.lost))
	}
	e.checkConverged(t)
}

// TestSnapshotEpochKill9Vectors: a snapshot killed with SIGKILL mid-epoch, and the replicator
// killed too, leave an epoch without its close: no product is tombstoned for it, live or not.
// The next `tidemark snapshot --supplier` carries on with the epoch and closes it: the vectors
// and a replaying subscriber converge on the table.
func TestSnapshotEpochKill9Vectors(t *testing.T) {
	t.Parallel()
	e := newEpochEnv(t)
	ctx := testenv.Context(t, 5*time.Minute)
	stop := e.writer(t)
	// Chunks of 10 rows: about 150 of them, so that the snapshot is still running when the
	// test sees its fifth (with 50-row chunks an idle machine wrote all 29 in 0.2s, and the
	// kill came after the epoch's close).
	snap := e.start(t, "snapshot", "--supplier", "1", "--chunk-size", "10")
	chunks := func() int { return e.snapshotChunks(ctx, t, true) }
	testenv.WaitFor(t, "a few chunks of the snapshot", time.Minute, func() bool { return chunks() >= 5 })
	if err := snap.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = snap.wait()
	if err := e.repl.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = e.repl.wait()
	stop()
	var unfinished int
	if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM tidemark_snapshots WHERE finished_at IS NULL AND open_lsn IS NOT NULL").Scan(&unfinished); err != nil {
		t.Fatal(err)
	}
	if unfinished != 1 {
		t.Fatalf("%d unfinished epochs after the kill; want 1 (the snapshot ended before it was killed?)", unfinished)
	}
	// Replicate comes back; with --snapshot never it leaves the unfinished snapshot alone.
	e.repl = e.replicate(t, "--snapshot", "never")
	e.repl.streaming(t)
	e.settle(t)
	if n := e.tombstonedProducts(t); n != 0 {
		t.Fatalf("%d live products were tombstoned by an epoch that never closed", n)
	}
	if n := e.liveVectors(t, e.lost); n != len(e.lost) {
		t.Fatalf("%d of %d products deleted in the gap were tombstoned before their epoch closed", len(e.lost)-n, len(e.lost))
	}
	_, events := readStream(t, e.js(t))
	for _, c := range events {
		if c.Op == event.OpEpochClose {
			t.Fatalf("an epoch_close is in the stream before the snapshot finished: %+v", c.Epoch)
		}
	}

	out, err := exec.Command(e.bin, "snapshot", "--pg-url", e.url, "--supplier", "1", "--chunk-size", "200").CombinedOutput()
	if err != nil {
		t.Fatalf("tidemark snapshot again: %v\n%s", err, out)
	}
	e.settle(t)
	e.checkConverged(t)
	_, events = readStream(t, e.js(t))
	opens, closes := 0, 0
	for _, c := range events {
		switch c.Op {
		case event.OpEpochOpen:
			opens++
		case event.OpEpochClose:
			closes++
		}
	}
	if opens != 1 || closes != 1 {
		t.Errorf("%d epoch_open and %d epoch_close in the stream; want the resumed epoch's one of each", opens, closes)
	}
}

// TestSlotLostResyncConvergesVectors: the whole lost-slot path with the encoders running. On
// top of supplier 1's lost deletes, the slot is dropped while the replicator is stopped, and
// both suppliers' products are inserted, renamed and deleted in the gap. replicate
// --on-slot-lost resync re-creates the slot and snapshots every supplier in epochs: the vector
// table then equals the product table (no live vector for a product deleted in the gap), and a
// subscriber replaying the stream from its start and honouring epochs ends with the table's
// rows, which one ignoring them does not.
func TestSlotLostResyncConvergesVectors(t *testing.T) {
	t.Parallel()
	e := newEpochEnv(t)
	ctx := testenv.Context(t, 5*time.Minute)
	if err := e.repl.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := e.repl.wait(); err != nil {
		t.Fatalf("replicate after SIGTERM: %v", err)
	}
	if _, err := e.pool.Exec(ctx, "SELECT pg_drop_replication_slot('tidemark')"); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `INSERT INTO products (supplier_id, sku, name, description) SELECT 1 + g % 2, 'GAP-' || g, 'Added in the gap ' || g, 'Pine.'
		FROM generate_series(1, 40) g`)
	e.exec(t, `UPDATE products SET name = 'Renamed in the gap ' || id WHERE sku LIKE 'EP-%' AND id % 11 = 0`)
	gone := e.deleteIDs(t, `DELETE FROM products WHERE sku LIKE 'EP-%' AND id % 13 = 0 RETURNING id`)
	if len(gone) < 100 {
		t.Fatalf("deleted %d products in the gap, want 100 or more", len(gone))
	}

	e.repl = e.replicate(t, "--on-slot-lost", "resync")
	testenv.WaitFor(t, "the resync to finish", 3*time.Minute, func() bool { return strings.Contains(e.repl.out.String(), "resync done") })
	if out := e.repl.out.String(); !strings.Contains(out, "reason=dropped") {
		t.Fatalf("the dropped slot was not reported as such:\n%s", out)
	}
	e.settle(t)
	var live int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM product_embeddings WHERE product_id = ANY($1) AND NOT deleted`, gone).Scan(&live); err != nil {
		t.Fatal(err)
	}
	if live != 0 {
		t.Errorf("%d of the %d products deleted in the gap still have live vectors", live, len(gone))
	}
	if n := e.liveVectors(t, e.lost); n != 0 {
		t.Errorf("%d of the %d products whose deletes were lost earlier still have live vectors", n, len(e.lost))
	}
	if n := e.tombstonedProducts(t); n != 0 {
		t.Errorf("%d existing products have a tombstone for a vector", n)
	}
	e.checkConverged(t)
}

// TestSnapshotEpochLostChunkSurvivesRestart: an epoch of supplier 1 loses a chunk (it reaches
// the replicator without its window, as after the window expired), the slot is confirmed past
// the chunk, and the replicator is killed with SIGKILL before the epoch's close is written.
// The restarted replicator must not publish that close: no epoch_close is in the stream, no
// live product is tombstoned, and a subscriber replaying the stream ends with the table's
// rows. Then `tidemark snapshot --supplier 1 --new-epoch`, as the log says, closes a new epoch.
func TestSnapshotEpochLostChunkSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t, 5*time.Minute)
	e := newEpochPipeline(t, 1200)

	const epoch = "s1-lost-chunk.1"
	open := testenv.EmitMessage(t, e.pool, replication.EpochOpenPrefix, replication.EpochMessage{ID: epoch, Supplier: 1, Schema: "public", Table: "products"})
	rows, err := e.pool.Query(ctx, `SELECT ARRAY[id::text, supplier_id::text, sku, name] FROM products WHERE supplier_id = 1 ORDER BY id LIMIT 200`)
	if err != nil {
		t.Fatal(err)
	}
	chunkRows, err := pgx.CollectRows(rows, pgx.RowTo[[]*string])
	if err != nil {
		t.Fatal(err)
	}
	// No low watermark before it: the replicator has no window for the chunk.
	testenv.EmitMessage(t, e.pool, replication.SnapshotChunkPrefix, replication.SnapshotChunk{ID: epoch, Chunk: 1, Schema: "public", Table: "products",
		Columns: []replication.SnapshotColumn{{Name: "id", Type: 20}, {Name: "supplier_id", Type: 23}, {Name: "sku", Type: 1043}, {Name: "name", Type: 25}},
		Rows:    chunkRows})
	e.settle(t)
	past := e.currentLSN(t)
	testenv.WaitFor(t, "the slot confirmed past the lost chunk", time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= past })
	if !strings.Contains(e.repl.out.String(), "snapshot chunks arrived after their windows expired") {
		t.Fatalf("replicate did not report the lost chunk:\n%s", e.repl.out.String())
	}
	if err := e.repl.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = e.repl.wait()

	// The snapshot finishes while replicate is down, then replicate comes back.
	testenv.EmitMessage(t, e.pool, replication.EpochClosePrefix, replication.EpochMessage{ID: epoch, Supplier: 1, Schema: "public", Table: "products",
		OpenLSN: open.String(), Rows: int64(len(chunkRows))})
	e.repl = e.replicate(t)
	e.repl.streaming(t)
	e.settle(t)
	if !strings.Contains(e.repl.out.String(), "snapshot epochs lost chunks and were not closed") {
		t.Errorf("the restarted replicate did not report the epoch it did not close:\n%s", e.repl.out.String())
	}
	if n := e.tombstonedProducts(t); n != 0 {
		t.Errorf("%d live products were tombstoned by the close of an epoch that lost a chunk", n)
	}
	_, events := readStream(t, e.js(t))
	for _, c := range events {
		if c.Op == event.OpEpochClose {
			t.Fatalf("the close of an epoch that lost a chunk is in the stream: %+v", c.Epoch)
		}
	}
	checkVectorsMatchProducts(ctx, t, e.replEnv, 0)
	if d := diff(replay(t, events, true), e.tableNames(t)); d != "" {
		t.Errorf("a subscriber honouring epochs, replaying the stream from the start: %s", d)
	}

	out, err := exec.Command(e.bin, "snapshot", "--pg-url", e.url, "--supplier", "1", "--new-epoch", "--chunk-size", "200").CombinedOutput()
	if err != nil {
		t.Fatalf("tidemark snapshot --new-epoch: %v\n%s", err, out)
	}
	e.settle(t)
	_, events = readStream(t, e.js(t))
	closes := 0
	for _, c := range events {
		if c.Op == event.OpEpochClose {
			closes++
			if c.Epoch.ID == epoch {
				t.Errorf("the close of the epoch that lost a chunk is in the stream: %+v", c.Epoch)
			}
		}
	}
	if closes != 1 {
		t.Errorf("%d epoch_close events after the new epoch; want its one", closes)
	}
	if n := e.tombstonedProducts(t); n != 0 {
		t.Errorf("%d live products tombstoned after the new epoch closed", n)
	}
	checkVectorsMatchProducts(ctx, t, e.replEnv, 0)
}
