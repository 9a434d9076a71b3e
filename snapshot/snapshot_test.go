package snapshot_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/snapshot"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestSupplierWritesWatermarksAndResumes checks the command side on its own: every row reaches
// the WAL in a chunk between its watermarks, and an interrupted snapshot resumes after the last
// chunk that committed instead of starting over.
func TestSupplierWritesWatermarksAndResumes(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	pool := testenv.Migrated(ctx, t, testenv.Database(t))
	testenv.AddSupplier(ctx, t, pool, 7, "")
	if _, err := pool.Exec(ctx, `INSERT INTO products (supplier_id, sku, name, price, attributes)
		SELECT 7, 'sku-' || g, 'Product ' || g, g * 1.5, jsonb_build_object('n', g) FROM generate_series(1, 250) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT pg_create_logical_replication_slot('watch', 'test_decoding')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "SELECT pg_drop_replication_slot('watch')") })

	// Interrupt after the second chunk.
	cctx, cancel := context.WithCancel(ctx)
	calls := 0
	r0, err := snapshot.Supplier(cctx, pool, 7, snapshot.Options{ChunkSize: 100, Progress: func(done, total int64) {
		calls++
		if done >= 200 {
			cancel()
		}
	}})
	cancel()
	if err == nil {
		t.Fatalf("interrupted snapshot returned no error (progress calls %d): %+v", calls, r0)
	}
	res, err := snapshot.Supplier(ctx, pool, 7, snapshot.Options{ChunkSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed || res.Rows != 250 {
		t.Fatalf("result %+v: want a resumed snapshot that ends with 250 rows", res)
	}

	lines := testenv.Column[string](ctx, t, pool, "SELECT data FROM pg_logical_slot_get_changes('watch', NULL, NULL)")
	seen := map[string]int{}
	lows, chunks, nonEmpty := 0, 0, 0
	var open *replication.SnapshotLow // the window a low watermark opened and no chunk closed yet
	content := func(l string) []byte {
		// test_decoding prints "message: transactional: 1 prefix: …, sz: N content:…".
		return []byte(l[strings.Index(l, "content:")+len("content:"):])
	}
	var opens, closes []replication.EpochMessage
	epochOf := map[string]bool{}
	for _, l := range lines {
		switch {
		case strings.Contains(l, "prefix: "+replication.EpochOpenPrefix), strings.Contains(l, "prefix: "+replication.EpochClosePrefix):
			var m replication.EpochMessage
			if err := json.Unmarshal([]byte(l[strings.Index(l, "content:")+len("content:"):]), &m); err != nil {
				t.Fatalf("epoch content: %v", err)
			}
			if strings.Contains(l, replication.EpochOpenPrefix) {
				opens = append(opens, m)
			} else {
				closes = append(closes, m)
			}
		case strings.Contains(l, "prefix: "+replication.SnapshotLowPrefix):
			lows++
			if open != nil {
				t.Fatalf("low watermark %d opened while chunk %d's window was still open", lows, open.Chunk)
			}
			open = &replication.SnapshotLow{}
			if err := json.Unmarshal(content(l), open); err != nil {
				t.Fatalf("low watermark content: %v", err)
			}
		case strings.Contains(l, "prefix: "+replication.SnapshotChunkPrefix):
			chunks++
			var c replication.SnapshotChunk
			if err := json.Unmarshal(content(l), &c); err != nil {
				t.Fatalf("chunk content: %v", err)
			}
			if open == nil || open.ID != c.ID || open.Chunk != c.Chunk {
				t.Fatalf("chunk %s/%d without its low watermark (open window: %+v)", c.ID, c.Chunk, open)
			}
			open = nil
			if len(c.Rows) > 0 {
				nonEmpty++
			}
			epochOf[c.ID] = true
			for _, r := range c.Rows {
				seen[*r[0]]++
			}
		}
	}
	if len(seen) != 250 {
		t.Fatalf("rows in chunks: %d distinct, want 250", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("row %s in %d chunks, want 1 (resume must not repeat committed chunks)", id, n)
		}
	}
	// Two chunks before the interruption, then the resumed run's third and the empty one that
	// ends it: four chunks, each closing the window its own low watermark opened. The
	// interrupted run writes no third low watermark: its context is cancelled when the second
	// chunk's progress is reported.
	if nonEmpty != 3 || chunks != 4 || lows != 4 || open != nil {
		t.Fatalf("%d chunks (%d with rows) and %d low watermarks (window left open: %+v); want 3 with rows, 1 empty, 4 low watermarks",
			chunks, nonEmpty, lows, open)
	}
	var unfinished int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM tidemark_snapshots WHERE finished_at IS NULL").Scan(&unfinished); err != nil {
		t.Fatal(err)
	}
	if unfinished != 0 {
		t.Fatalf("%d unfinished snapshots after completion", unfinished)
	}
	// One epoch, carried on by the resumed run: opened once, closed once, with every chunk.
	var openLSN string
	if err := pool.QueryRow(ctx, "SELECT open_lsn::text FROM tidemark_snapshots WHERE id = $1", res.ID).Scan(&openLSN); err != nil {
		t.Fatal(err)
	}
	if len(opens) != 1 || len(closes) != 1 || opens[0].ID != res.Epoch || closes[0].ID != res.Epoch ||
		closes[0].OpenLSN != openLSN || closes[0].Rows != 250 || closes[0].Supplier != 7 {
		t.Fatalf("epoch messages: opens %+v, closes %+v; want one of each for epoch %s opened at %s, closing 250 rows", opens, closes, res.Epoch, openLSN)
	}
	if len(epochOf) != 1 || !epochOf[res.Epoch] {
		t.Fatalf("chunks name epochs %v, want only %s", epochOf, res.Epoch)
	}
}

// interruptSnapshot starts a snapshot of supplier in chunks of 50 and cancels it after the
// first chunk; it returns the epoch of the unfinished snapshot.
func interruptSnapshot(ctx context.Context, t *testing.T, pool *pgxpool.Pool, supplier int32) (epoch string) {
	t.Helper()
	cctx, cancel := context.WithCancel(ctx)
	res, err := snapshot.Supplier(cctx, pool, supplier, snapshot.Options{ChunkSize: 50, Progress: func(done, _ int64) {
		if done >= 50 {
			cancel()
		}
	}})
	cancel()
	if err == nil {
		t.Fatalf("interrupted snapshot returned no error: %+v", res)
	}
	if err := pool.QueryRow(ctx, "SELECT epoch_id FROM tidemark_snapshots WHERE finished_at IS NULL").Scan(&epoch); err != nil {
		t.Fatal(err)
	}
	return epoch
}

// TestSupplierNewEpoch: after changes were lost, an unfinished snapshot is not resumed but
// read again in a new epoch, and only that one closes.
func TestSupplierNewEpoch(t *testing.T) {
	ctx := testenv.Context(t, 2*time.Minute)
	pool := testenv.Migrated(ctx, t, testenv.Database(t))
	testenv.AddSupplier(ctx, t, pool, 5, "")
	if _, err := pool.Exec(ctx, `INSERT INTO products (supplier_id, sku, name) SELECT 5, 'k' || g, 'Tessa side table' FROM generate_series(1, 120) g`); err != nil {
		t.Fatal(err)
	}
	abandoned := interruptSnapshot(ctx, t, pool, 5)
	// Both ways: the option for one supplier, AbandonEpochs for every unfinished snapshot.
	for _, all := range []bool{false, true} {
		opts := snapshot.Options{ChunkSize: 50, NewEpoch: !all}
		if all {
			abandoned = interruptSnapshot(ctx, t, pool, 5)
			if n, err := snapshot.AbandonEpochs(ctx, pool); err != nil || n != 1 {
				t.Fatalf("AbandonEpochs: %d, %v; want 1", n, err)
			}
		}
		res, err := snapshot.Supplier(ctx, pool, 5, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Resumed || res.Rows != 120 || res.Chunks != 3 || res.Epoch == abandoned || res.Epoch == "" {
			t.Fatalf("result %+v (AbandonEpochs %v): want all 120 rows read again in a new epoch (not %s)", res, all, abandoned)
		}
	}
}

// TestSupplierGivesUpOnALongTransaction: a transaction that stays open holds every chunk up;
// the snapshot gives up after MaxWait with ErrWaitedTooLong instead of waiting for ever (the
// replicator would expire its window anyway), and a later run resumes.
func TestSupplierGivesUpOnALongTransaction(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	pool := testenv.Migrated(ctx, t, testenv.Database(t))
	testenv.AddSupplier(ctx, t, pool, 3, "")
	if _, err := pool.Exec(ctx, `INSERT INTO products (supplier_id, sku, name) SELECT 3, 'k' || g, 'n' FROM generate_series(1, 10) g`); err != nil {
		t.Fatal(err)
	}
	long, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Before the pool's own cleanup (LIFO), which would wait for this connection for ever.
	t.Cleanup(func() { _ = long.Rollback(context.Background()) })
	if _, err := long.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	_, err = snapshot.Supplier(ctx, pool, 3, snapshot.Options{MaxWait: 300 * time.Millisecond})
	if !errors.Is(err, snapshot.ErrWaitedTooLong) {
		t.Fatalf("snapshot behind an open transaction: %v, want ErrWaitedTooLong", err)
	}
	if err := long.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := snapshot.Supplier(ctx, pool, 3, snapshot.Options{MaxWait: 300 * time.Millisecond})
	if err != nil || res.Rows != 10 {
		t.Fatalf("after the transaction ended: %+v, %v; want 10 rows", res, err)
	}
}
