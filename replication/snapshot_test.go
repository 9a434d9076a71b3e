package replication_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/snapshot"
)

// TestSnapshotUnderConcurrentWrites runs an incremental snapshot of a supplier while a writer
// inserts, updates and deletes its products at random, and while acknowledgements fail now and
// then (each failure replays the stream from the confirmed LSN, also mid-window). Whatever the
// interleaving, the last event of every product must be its final row, a deleted product's last
// event must be its delete, and every untouched product must have been snapshotted.
func TestSnapshotUnderConcurrentWrites(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	ctx := testenv.Context(t, 3*time.Minute)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name, price)
		SELECT 1, 'sku-' || g, 'Product ' || g, g FROM generate_series(1, 3000) g`)

	rec := &recorder{}
	_, stop := e.run(t, rec)
	testenv.WaitFor(t, "the initial rows", time.Minute, func() bool { return rec.count() >= 3000 })

	// The writer updates, deletes and adds products at random while the snapshot runs.
	touched := sync.Map{}
	stopChurn := testenv.Churn{Supplier: 1, Seed: 1, Pause: 2 * time.Millisecond, // leave most products untouched, to check coverage
		ID:      func(rng *rand.Rand) int64 { return rng.Int64N(3000) + 1 },
		Touched: func(id int64) { touched.Store(id, true) },
	}.Start(t, e.pool)
	writerCtx, stopWriter := context.WithCancel(ctx)
	var wg sync.WaitGroup

	// Long-ish transactions keep each chunk's window open while the snapshot waits for them
	// to end, so the replicator's flushes (and the injected failures) land inside windows.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for writerCtx.Err() == nil {
			tx, err := e.pool.Begin(writerCtx)
			if err != nil {
				return
			}
			_, _ = tx.Exec(writerCtx, "SELECT pg_current_xact_id()")
			select {
			case <-writerCtx.Done():
			case <-time.After(400 * time.Millisecond):
			}
			_ = tx.Commit(context.Background())
		}
	}()

	var armed sync.Once
	res, err := snapshot.Supplier(ctx, e.pool, 1, snapshot.Options{ChunkSize: 150, Progress: func(done, _ int64) {
		if done >= 150 {
			// Acks start failing mid-snapshot, a moment into a window (after a flush that
			// succeeded inside it): the replay must start before the window's low watermark.
			armed.Do(func() { time.AfterFunc(250*time.Millisecond, func() { rec.failFlushes.Store(3) }) })
		}
	}})
	stopChurn()
	stopWriter()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks < 10 {
		t.Fatalf("snapshot took %d chunks; want many, for the writer to interleave", res.Chunks)
	}

	// A marker after everything: once it arrives the stream has caught up.
	e.exec(t, "INSERT INTO products (supplier_id, sku, name) VALUES (2, 'marker', 'marker')")
	testenv.WaitFor(t, "the marker event", time.Minute, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for i := len(rec.changes) - 1; i >= 0; i-- {
			if rec.changes[i].Key.SupplierID == 2 {
				return true
			}
		}
		return false
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if rec.failFlushes.Load() >= 0 {
		t.Fatalf("only %d of 3 injected ack failures happened; the replay path went untested", 3-max(rec.failFlushes.Load(), 0))
	}

	type row struct{ name, price string }
	final := map[int64]row{}
	rows, err := e.pool.Query(ctx, "SELECT id, name, price::text FROM products WHERE supplier_id = 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var r row
		if err := rows.Scan(&id, &r.name, &r.price); err != nil {
			t.Fatal(err)
		}
		final[id] = r
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}

	last := map[int64]event.Change{}
	snapshotted := map[int64]bool{}
	rec.mu.Lock()
	for _, c := range rec.changes {
		if c.Key.SupplierID != 1 || c.Op == event.OpEpochOpen || c.Op == event.OpEpochClose {
			continue
		}
		last[c.Key.ID] = c
		if c.Op == event.OpSnapshot {
			snapshotted[c.Key.ID] = true
		}
	}
	rec.mu.Unlock()

	str := func(c event.Change, col string) string {
		raw, _ := c.After.Get(col)
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	}
	for id, want := range final {
		c, ok := last[id]
		if !ok {
			t.Errorf("product %d: no event at all", id)
			continue
		}
		if c.Op == event.OpDelete {
			t.Errorf("product %d exists but its last event is a delete", id)
			continue
		}
		if got := (row{str(c, "name"), str(c, "price")}); got != want {
			t.Errorf("product %d: last event (%s) has %+v, the table %+v", id, c.Op, got, want)
		}
		if _, wasTouched := touched.Load(id); !wasTouched && id <= 3000 && !snapshotted[id] {
			t.Errorf("product %d was never changed during the snapshot but has no snapshot event", id)
		}
	}
	for id, c := range last {
		if _, exists := final[id]; !exists && c.Op != event.OpDelete {
			t.Errorf("product %d is deleted but its last event is %s", id, c.Op)
		}
	}
	if len(snapshotted) == 0 {
		t.Fatal("no snapshot events")
	}
	t.Logf("%d chunks, %d rows snapshotted, %d products touched meanwhile", res.Chunks, len(snapshotted), countMap(&touched))
}

func countMap(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}
