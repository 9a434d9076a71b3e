package replication

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/tidemark/tidemark/event"
)

func TestWatermarksDropKeysChangedInsideTheWindow(t *testing.T) {
	var w watermarks
	low := func(id string, chunk int, lsn pglogrepl.LSN) {
		t.Helper()
		b, _ := json.Marshal(SnapshotLow{ID: id, Chunk: chunk})
		if err := w.low(b, lsn); err != nil {
			t.Fatal(err)
		}
	}
	chunk := func(id string, n int) func(event.Key) bool {
		t.Helper()
		b, _ := json.Marshal(SnapshotChunk{ID: id, Chunk: n})
		before, _ := w.holdLSN()
		_, keep, err := w.chunk(b, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Until the chunk's transaction commits, the window it closed still holds the slot.
		if held, _ := w.holdLSN(); before != 0 && held > before {
			t.Fatalf("holdLSN inside the chunk's transaction = %v, want at most %v", held, before)
		}
		w.committed()
		return keep
	}

	w.observe(event.OpUpdate, event.Key{SupplierID: 1, ID: 1}) // before any window: irrelevant
	if _, held := w.holdLSN(); held {
		t.Fatal("holdLSN with no window open")
	}
	low("a", 1, 100)
	low("b", 1, 150)
	if lsn, _ := w.holdLSN(); lsn != 100 {
		t.Fatalf("holdLSN = %v, want the oldest low watermark 100", lsn)
	}
	w.observe(event.OpUpdate, event.Key{SupplierID: 1, ID: 2})
	w.observe(event.OpDelete, event.Key{SupplierID: 2, ID: 5})

	keepA := chunk("a", 1)
	for key, want := range map[event.Key]bool{{SupplierID: 1, ID: 1}: true, {SupplierID: 1, ID: 2}: false, {SupplierID: 2, ID: 5}: false, {SupplierID: 1, ID: 3}: true} {
		if got := keepA(key); got != want {
			t.Errorf("chunk a keep(%v) = %v, want %v", key, got, want)
		}
	}
	if lsn, _ := w.holdLSN(); lsn != 150 {
		t.Fatalf("holdLSN after closing a = %v, want 150", lsn)
	}
	w.observe(event.OpTruncate, event.Key{})
	keepB := chunk("b", 1)
	if keepB(event.Key{SupplierID: 9, ID: 9}) {
		t.Fatal("a truncate inside the window must drop the whole chunk")
	}
	if _, held := w.holdLSN(); held {
		t.Fatal("holdLSN after every window closed")
	}
	// A chunk whose low watermark this session never saw publishes nothing.
	if chunk("c", 1)(event.Key{SupplierID: 1, ID: 1}) {
		t.Fatal("chunk without a window must publish nothing")
	}
	if err := w.low([]byte("{not json"), 1); err == nil {
		t.Fatal("malformed low watermark: want an error")
	}
	if _, _, err := w.chunk([]byte("[]"), 1, 1); err == nil {
		t.Fatal("malformed chunk: want an error")
	}
}

// A window whose chunk never comes (the snapshot process died) must not hold the slot for
// ever; a chunk that arrives after its window expired publishes nothing and is reported.
func TestWatermarksExpire(t *testing.T) {
	now := time.Unix(0, 0)
	w := watermarks{now: func() time.Time { return now }}
	b, _ := json.Marshal(SnapshotLow{ID: "s", Chunk: 1})
	if err := w.low(b, 100); err != nil {
		t.Fatal(err)
	}
	if _, held := w.holdLSN(); !held {
		t.Fatal("fresh window: want the slot held")
	}
	now = now.Add(WindowExpiry + time.Second)
	if _, held := w.holdLSN(); held {
		t.Fatal("expired window still holds the slot")
	}
	c, _ := json.Marshal(SnapshotChunk{ID: "s", Chunk: 1, Rows: [][]*string{{nil}}})
	_, keep, err := w.chunk(c, 200, 200)
	if err != nil {
		t.Fatal(err)
	}
	if keep(event.Key{SupplierID: 1, ID: 1}) || len(w.expired) != 1 {
		t.Fatalf("late chunk: keep=%v expired=%v; want nothing published and the chunk reported", keep(event.Key{SupplierID: 1, ID: 1}), w.expired)
	}
}

// A window remembers only changes of its chunk's own keys, so heavy writes elsewhere cost it
// nothing; changes in its range are remembered exactly.
func TestWatermarkWindowRemembersOnlyItsRange(t *testing.T) {
	var w watermarks
	b, _ := json.Marshal(SnapshotLow{ID: "s", Chunk: 1, Supplier: 7, After: 1000, Until: 3000})
	if err := w.low(b, 100); err != nil {
		t.Fatal(err)
	}
	for i := int64(0); i < 1_000_000; i++ {
		w.observe(event.OpUpdate, event.Key{SupplierID: 1 + i%5, ID: i})  // other suppliers
		w.observe(event.OpInsert, event.Key{SupplierID: 7, ID: 3001 + i}) // past the chunk
	}
	w.observe(event.OpUpdate, event.Key{SupplierID: 7, ID: 1000}) // the previous chunk's last key
	w.observe(event.OpUpdate, event.Key{SupplierID: 7, ID: 2000})
	win := w.open[windowKey{"s", 1}]
	if len(win.changed) != 1 {
		t.Fatalf("the window remembers %d keys, want only the one of its range", len(win.changed))
	}
	c, _ := json.Marshal(SnapshotChunk{ID: "s", Chunk: 1, Rows: [][]*string{{nil}}})
	_, keep, err := w.chunk(c, 200, 200)
	if err != nil {
		t.Fatal(err)
	}
	if keep(event.Key{SupplierID: 7, ID: 2000}) || !keep(event.Key{SupplierID: 7, ID: 2001}) {
		t.Fatal("a changed key of the range must be dropped, an unchanged one kept")
	}
}

// A window of unknown range (an older snapshot process) under heavy writes stops at
// MaxWindowKeys: its memory is bounded, its chunk publishes nothing (its rows may be stale)
// and is reported.
func TestWatermarkWindowIsBounded(t *testing.T) {
	var w watermarks
	b, _ := json.Marshal(SnapshotLow{ID: "s", Chunk: 1})
	if err := w.low(b, 100); err != nil {
		t.Fatal(err)
	}
	win := w.open[windowKey{"s", 1}]
	peak := 0
	for i := int64(0); i < 4*MaxWindowKeys; i++ {
		w.observe(event.OpUpdate, event.Key{SupplierID: 1, ID: i})
		peak = max(peak, len(win.changed))
	}
	if peak > MaxWindowKeys || win.changed != nil {
		t.Fatalf("window kept up to %d keys (now %d), want at most %d and then none", peak, len(win.changed), MaxWindowKeys)
	}
	c, _ := json.Marshal(SnapshotChunk{ID: "s", Chunk: 1, Rows: [][]*string{{nil}}})
	_, keep, err := w.chunk(c, 200, 200)
	if err != nil {
		t.Fatal(err)
	}
	if keep(event.Key{SupplierID: 1, ID: 4 * MaxWindowKeys}) || len(w.overflowed) != 1 {
		t.Fatalf("overflowed window: keep=%v overflowed=%v; want nothing published and the chunk reported", keep(event.Key{SupplierID: 1, ID: 1}), w.overflowed)
	}
}

// TestWatermarksSpoilEpochs: a chunk with rows that publishes nothing for want of its window
// spoils its epoch (whose close is then dropped, every time it is replayed), unless the stream
// already held it from an earlier session (a replay from before the chunk but after its low
// watermark). The loss is reported for saving once, and again when the close comes.
func TestWatermarksSpoilEpochs(t *testing.T) {
	row := "1"
	b, _ := json.Marshal(SnapshotChunk{ID: "e1", Chunk: 2, Columns: []SnapshotColumn{{Name: "supplier_id", Type: 23}}, Rows: [][]*string{{&row}}})
	w := watermarks{stored: 500}
	if _, _, err := w.chunk(b, 400, 450); err != nil {
		t.Fatal(err)
	}
	if w.spoiled("e1", 700) || len(w.expired) != 0 || w.lostChanged {
		t.Fatalf("a chunk the stream already holds spoiled its epoch (expired %v)", w.expired)
	}
	if _, _, err := w.chunk(b, 600, 650); err != nil {
		t.Fatal(err)
	}
	if !w.lostChanged || len(w.expired) != 1 {
		t.Fatalf("a chunk lost for want of its window was not reported (expired %v, changed %v)", w.expired, w.lostChanged)
	}
	if got, want := *w.lost["e1"], (LostEpoch{ID: "e1", Supplier: 1, Lost: 650}); got != want {
		t.Fatalf("lost epoch %+v, want %+v", got, want)
	}
	w.lostChanged = false
	if _, _, err := w.chunk(b, 600, 650); err != nil {
		t.Fatal(err)
	}
	if w.lostChanged || *w.lost["e1"] != (LostEpoch{ID: "e1", Supplier: 1, Lost: 650}) {
		t.Fatalf("a second loss of the same epoch changed what is saved: %+v", *w.lost["e1"])
	}
	if !w.spoiled("e1", 700) || !w.lostChanged || w.lost["e1"].Closed != 700 {
		t.Fatalf("the close of a spoiled epoch was not dropped, or not recorded: %+v", *w.lost["e1"])
	}
	w.lostChanged = false
	if !w.spoiled("e1", 700) || w.lostChanged {
		t.Fatal("a replayed close of a spoiled epoch must be dropped again, with nothing new to save")
	}
}

// TestWatermarksPartitionTruncate: the truncate of one supplier's partition drops the chunks of
// that supplier's open windows (the rows are gone) and leaves another supplier's chunk whole;
// a window of unknown keys is given up, and its epoch with it, since dropping its rows could
// let the close delete what the epoch did not carry.
func TestWatermarksPartitionTruncate(t *testing.T) {
	var w watermarks
	open := func(id string, low SnapshotLow) {
		t.Helper()
		low.ID, low.Chunk = id, 1
		b, _ := json.Marshal(low)
		if err := w.low(b, 100); err != nil {
			t.Fatal(err)
		}
	}
	id, supplier := "7", "1"
	rows := [][]*string{{&id, &supplier}}
	keep := func(id string, supplier int64) (kept bool) {
		t.Helper()
		b, _ := json.Marshal(SnapshotChunk{ID: id, Chunk: 1, Rows: rows,
			Columns: []SnapshotColumn{{Name: "id", Type: 20}, {Name: "supplier_id", Type: 23}}})
		_, k, err := w.chunk(b, 200, 200)
		if err != nil {
			t.Fatal(err)
		}
		w.committed()
		return k(event.Key{SupplierID: supplier, ID: 7})
	}

	open("s1", SnapshotLow{Supplier: 1, After: 0, Until: 100})
	open("s2", SnapshotLow{Supplier: 2, After: 0, Until: 100})
	w.truncatedPartition(1)
	if keep("s1", 1) {
		t.Error("the truncated supplier's chunk kept its rows")
	}
	if !keep("s2", 2) {
		t.Error("another supplier's chunk lost its rows to a partition truncate")
	}
	if len(w.lost) != 0 {
		t.Fatalf("epochs lost: %v", w.lost)
	}

	open("s3", SnapshotLow{Supplier: 3, After: 0, Until: 100})
	open("old", SnapshotLow{}) // an older tidemark's: any key
	w.truncatedPartition(1)
	if !keep("s3", 3) {
		t.Error("another supplier's chunk lost its rows")
	}
	if keep("old", 1) {
		t.Error("a window of unknown keys kept its rows")
	}
	if _, ok := w.lost["old"]; !ok || len(w.lost) != 1 {
		t.Fatalf("lost epochs %v, want old", w.lost)
	}
}
