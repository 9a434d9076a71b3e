package encoder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
)

// vecStore is a migrated database with the vector layout asked for, and its Store.
type vecStore struct {
	t    *testing.T
	ctx  context.Context
	pool *pgxpool.Pool
	s    *Store
	emb  *Hash
	lsn  atomic.Uint64
}

func newVecStore(t *testing.T, layout string) *vecStore {
	t.Helper()
	ctx := testenv.Context(t, 4*time.Minute)
	pool := testenv.Migrated(ctx, t, testenv.DatabaseVectors(t, testenv.Cluster(t), layout))
	s, err := OpenStore(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if s.Vector() != (layout == "pgvector") {
		t.Fatalf("layout %s: store sees pgvector=%v", layout, s.Vector())
	}
	emb, err := NewHash(DefaultDim)
	if err != nil {
		t.Fatal(err)
	}
	return &vecStore{t: t, ctx: ctx, pool: pool, s: s, emb: emb}
}

var (
	testAdjectives = []string{"waterproof", "lightweight", "insulated", "non-stick", "wireless", "hand-forged", "packable", "rugged"}
	testMaterials  = []string{"merino wool", "carbon steel", "ripstop nylon", "walnut", "aluminium", "goose down", "ceramic"}
	testNouns      = []string{"hiking jacket", "frying pan", "backpack", "chef's knife", "headphones", "sleeping bag", "kettle", "tent", "keyboard"}
)

// catalogueText is the text of test product id: a few words from a small trade vocabulary and
// its number, so texts share words as catalogues do and no two are equal.
func catalogueText(id int64) string {
	n := int(id)
	return fmt.Sprintf("%s %s %s no. %d\nmade of %s, %s finish",
		testAdjectives[n%len(testAdjectives)], testAdjectives[(n/7)%len(testAdjectives)], testNouns[(n/3)%len(testNouns)], id,
		testMaterials[(n/11)%len(testMaterials)], testAdjectives[(n/13)%len(testAdjectives)])
}

// write upserts products from..to-1 of supplier (deleted: as tombstones) through the
// encoders' path, in batches of 500, and returns when every batch has committed.
func (v *vecStore) write(supplier int64, from, to int64, deleted bool) {
	v.t.Helper()
	if err := v.tryWrite(supplier, from, to, deleted); err != nil {
		v.t.Fatal(err)
	}
}

func (v *vecStore) tryWrite(supplier int64, from, to int64, deleted bool) error {
	for lo := from; lo < to; lo += 500 {
		hi := min(lo+500, to)
		var texts []string
		for id := lo; id < hi; id++ {
			texts = append(texts, catalogueText(id))
		}
		vecs, _ := v.emb.Embed(v.ctx, texts)
		ws := make([]write, 0, hi-lo)
		for i, id := range rangeIDs(lo, hi) {
			sku, name := fmt.Sprintf("S%d-%d", supplier, id), texts[i]
			w := write{key: event.Key{SupplierID: supplier, ID: id}, sku: &sku, name: &name,
				hash: ContentHash(v.emb.Model(), texts[i]), lsn: event.LSN(v.lsn.Add(1)), deleted: deleted}
			if !deleted {
				w.vec = vecs[i]
			}
			ws = append(ws, w)
		}
		err := pgx.BeginFunc(v.ctx, v.pool, func(tx pgx.Tx) error {
			v.s.staged.Delete(tx.Conn().PgConn()) // a rolled-back batch may have undone it
			_, err := v.s.upsert(v.ctx, tx, v.emb.Model(), ws, false)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func rangeIDs(lo, hi int64) []int64 {
	ids := make([]int64, 0, hi-lo)
	for id := lo; id < hi; id++ {
		ids = append(ids, id)
	}
	return ids
}

func (v *vecStore) query(id int64) []float32 {
	vecs, _ := v.emb.Embed(v.ctx, []string{catalogueText(id)})
	return vecs[0]
}

func (v *vecStore) search(q []float32, opts SearchOptions) SearchResult {
	v.t.Helper()
	r, err := v.s.SearchWith(v.ctx, v.emb.Model(), q, opts)
	if err != nil {
		v.t.Fatal(err)
	}
	return r
}

// explain is the plan of the search for q.
func (v *vecStore) explain(q []float32, supplier int32) string {
	v.t.Helper()
	lit, _ := quoteLiteral(v.emb.Model())
	filter := ""
	if supplier != 0 {
		filter = fmt.Sprintf(" AND supplier_id = %d", supplier)
	}
	var plan []string
	err := pgx.BeginFunc(v.ctx, v.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(v.ctx, "SET LOCAL ivfflat.probes = 1"); err != nil {
			return err
		}
		rows, err := tx.Query(v.ctx, "EXPLAIN "+fmt.Sprintf(searchSQL, lit, len(q), filter, 40, 10), q)
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		v.t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}

// TestIndexAndSearch builds the ANN index of a partition big enough to need one and checks
// that search goes through it (the plan names it, --json would say so), finds what the exact
// scan finds, scans the small partition, and that without pgvector everything scans.
func TestIndexAndSearch(t *testing.T) {
	for _, layout := range []string{"pgvector", "array"} {
		t.Run(layout, func(t *testing.T) {
			v := newVecStore(t, layout)
			v.write(1, 1, IndexMinVectors+1001, false)
			v.write(2, 1, 301, false)
			v.write(1, 1, 11, true) // tombstones
			model := v.emb.Model()

			if !v.s.Vector() {
				if _, err := v.s.BuildIndex(v.ctx, model, DefaultDim, 1, false, nil); err == nil {
					t.Fatal("BuildIndex on real[]: no error")
				}
				r := v.search(v.query(500), SearchOptions{K: 5})
				if r.Method != MethodScan || len(r.Hits) != 5 || r.Hits[0].ProductID != 500 || r.Hits[0].Score < 0.999 {
					t.Fatalf("real[] search: %+v, want a scan finding product 500 first", r)
				}
				return
			}
			for _, sup := range []int32{1, 2} {
				var exists bool
				if err := v.pool.QueryRow(v.ctx, "SELECT to_regclass($1) IS NOT NULL", PartitionName(sup)).Scan(&exists); err != nil || !exists {
					t.Fatalf("partition %s: exists %v, err %v", PartitionName(sup), exists, err)
				}
			}
			mi, err := v.s.Index(v.ctx, model, DefaultDim, true)
			if err != nil {
				t.Fatal(err)
			}
			if mi.State != IndexMissing || len(mi.Partitions) != 2 || mi.Partitions[0].State != IndexMissing ||
				mi.Partitions[0].Vectors != IndexMinVectors+990 || mi.Partitions[1].State != IndexSmall {
				t.Fatalf("before the build: %+v, want supplier 1 missing (%d vectors), 2 small", mi, IndexMinVectors+990)
			}
			if r := v.search(v.query(500), SearchOptions{K: 5}); r.Method != MethodScan || r.Indexed != 0 || r.Scanned != 2 {
				t.Fatalf("search before the build: method %s, %d indexed, %d scanned; want a scan of 2", r.Method, r.Indexed, r.Scanned)
			}
			var phases []string
			name, err := v.s.BuildIndex(v.ctx, model, DefaultDim, 1, false, func(p string) { phases = append(phases, p) })
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("built %s; progress seen: %q", name, phases)
			if mi, err = v.s.Index(v.ctx, model, DefaultDim, true); err != nil {
				t.Fatal(err)
			}
			if mi.State != IndexBuilt || mi.Partitions[0].State != IndexBuilt || mi.Partitions[0].Name != name ||
				mi.Partitions[0].Lists != listsFor(IndexMinVectors+990) || mi.Partitions[0].Bytes == 0 {
				t.Fatalf("after the build: %+v", mi)
			}
			if again, err := v.s.BuildIndex(v.ctx, model, DefaultDim, 1, false, nil); err != nil || again != name {
				t.Fatalf("second build: %s, %v; want the same index, untouched", again, err)
			}
			q := v.query(500)
			if plan := v.explain(q, 0); !strings.Contains(plan, name) {
				t.Fatalf("the search plan does not use %s:\n%s", name, plan)
			}
			if plan := v.explain(q, 1); !strings.Contains(plan, name) || strings.Contains(plan, PartitionName(2)) {
				t.Fatalf("the supplier-scoped plan does not read %s alone:\n%s", name, plan)
			}
			for _, c := range []struct {
				opts             SearchOptions
				method           string
				indexed, scanned int
			}{
				{SearchOptions{K: 10}, MethodIndex, 1, 1},
				{SearchOptions{K: 10, Supplier: 1}, MethodIndex, 1, 0},
				{SearchOptions{K: 10, Supplier: 2}, MethodScan, 0, 1},
			} {
				// Products 1..300 have the same text at both suppliers: a global query for one of
				// them has two answers at cosine 1, so the global ones ask for others.
				ids := []int64{500, 4321, 6000}
				if c.opts.Supplier == 2 {
					ids = []int64{11, 42, 250}
				}
				for _, id := range ids {
					q := v.query(id)
					got := v.search(q, c.opts)
					if got.Method != c.method || got.Indexed != c.indexed || got.Scanned != c.scanned {
						t.Fatalf("%+v: method %s, %d indexed, %d scanned; want %s, %d, %d", c.opts, got.Method, got.Indexed, got.Scanned, c.method, c.indexed, c.scanned)
					}
					exact := c.opts
					exact.Exact = true
					want := v.search(q, exact)
					if want.Method != MethodExact || len(got.Hits) != 10 || len(want.Hits) != 10 {
						t.Fatalf("%+v: %d hits, exact %d (%s)", c.opts, len(got.Hits), len(want.Hits), want.Method)
					}
					// The product itself is first, at cosine 1; the rest as the exact scan has them,
					// give or take the index's misses (the scores are exact either way).
					if got.Hits[0].ProductID != id || got.Hits[0].Score < 0.999 || want.Hits[0] != got.Hits[0] {
						t.Fatalf("%+v query %d: first hit %+v, exact %+v", c.opts, id, got.Hits[0], want.Hits[0])
					}
					for i := 1; i < len(got.Hits); i++ {
						if got.Hits[i].Score > got.Hits[i-1].Score || got.Hits[i].Score > want.Hits[i].Score+1e-9 {
							t.Fatalf("%+v query %d: hit %d %+v out of order or better than the exact %+v", c.opts, id, i, got.Hits[i], want.Hits[i])
						}
					}
				}
			}
			// Tombstoned products are never found.
			for _, h := range v.search(v.query(5), SearchOptions{K: 50, Supplier: 1}).Hits {
				if h.ProductID <= 10 {
					t.Fatalf("search found deleted product %d", h.ProductID)
				}
			}
		})
	}
}

// TestIndexBuildWhileWriting builds an index with writers going on, on the partition being
// indexed and into a partition created during the build: the writes commit during the build
// (it stops nobody) and the vectors written meanwhile are found through the new index.
func TestIndexBuildWhileWriting(t *testing.T) {
	t.Parallel() // waits on index builds, in a database of its own
	v := newVecStore(t, "pgvector")
	const n = 50000
	v.write(1, 1, n+1, false)
	model := v.emb.Model()

	var building atomic.Bool
	var during atomic.Int64 // batches committed while the build ran
	var newPartition atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for next := int64(n + 1); ; next += 50 {
			select {
			case <-stop:
				return
			default:
			}
			sup := int64(1)
			if next%200 == 1 {
				sup = 3 // its partition is created by this write
			}
			if err := v.tryWrite(sup, next, next+50, false); err != nil {
				werr = err
				return
			}
			if building.Load() {
				during.Add(1)
				if sup == 3 {
					newPartition.Store(true)
				}
			}
		}
	}()
	var phases []string
	building.Store(true)
	start := time.Now()
	name, err := v.s.BuildIndex(v.ctx, model, DefaultDim, 1, false, func(p string) { phases = append(phases, p) })
	building.Store(false)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatalf("writer: %v", werr)
	}
	t.Logf("build %.1fs, %d batches committed meanwhile, progress %q", time.Since(start).Seconds(), during.Load(), phases)
	if during.Load() < 2 || !newPartition.Load() {
		t.Fatalf("%d batches committed during the build, new partition %v: the build stopped the writers", during.Load(), newPartition.Load())
	}
	if len(phases) == 0 {
		t.Fatal("no progress reported during the build")
	}
	// A vector written during the build is in the index.
	var last int64
	if err := v.pool.QueryRow(v.ctx, "SELECT max(product_id) FROM product_embeddings_s1").Scan(&last); err != nil {
		t.Fatal(err)
	}
	r := v.search(v.query(last), SearchOptions{K: 3, Supplier: 1})
	if r.Method != MethodIndex || len(r.Hits) == 0 || r.Hits[0].ProductID != last {
		t.Fatalf("search for product %d written during the build: %+v", last, r)
	}
	if plan := v.explain(v.query(last), 1); !strings.Contains(plan, name) {
		t.Fatalf("plan without %s:\n%s", name, plan)
	}
}

// TestIndexBuildInterrupted cancels a build part-way: by the time BuildIndex returns, the
// server has stopped the build and the lock is free, so the invalid index it left is reported
// at once and a build started at once drops it and builds a valid one (when the cancel closed
// the connection instead, the server went on building, and that build was refused as busy).
func TestIndexBuildInterrupted(t *testing.T) {
	t.Parallel() // waits on index builds, in a database of its own
	v := newVecStore(t, "pgvector")
	v.write(1, 1, 60001, false)
	model := v.emb.Model()
	ctx, cancel := context.WithCancel(v.ctx)
	var seen []string
	_, err := v.s.BuildIndex(ctx, model, DefaultDim, 1, false, func(p string) {
		seen = append(seen, p)
		cancel() // at the first progress report: the build is under way
	})
	if !errors.Is(err, context.Canceled) || len(seen) == 0 {
		t.Fatalf("interrupted build: err %v after progress %q; want a cancelled build", err, seen)
	}
	var builders int
	if err := v.pool.QueryRow(v.ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'CREATE INDEX%' AND state = 'active'").Scan(&builders); err != nil || builders != 0 {
		t.Fatalf("after the interrupted build returned: %d backends still building in its database (err %v)", builders, err)
	}
	mi, err := v.s.Index(v.ctx, model, DefaultDim, true)
	if err != nil {
		t.Fatal(err)
	}
	if mi.Partitions[0].State != IndexInvalid || mi.State != IndexMissing {
		t.Fatalf("after the interrupted build: %+v, want an invalid index", mi)
	}
	invalid := mi.Partitions[0].Name
	name, err := v.s.BuildIndex(v.ctx, model, DefaultDim, 1, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var left bool
	if err := v.pool.QueryRow(v.ctx, "SELECT to_regclass($1) IS NOT NULL AND $1 <> $2", invalid, name).Scan(&left); err != nil || left {
		t.Fatalf("invalid index %s still there (err %v)", invalid, err)
	}
	if mi, err = v.s.Index(v.ctx, model, DefaultDim, true); err != nil || mi.State != IndexBuilt {
		t.Fatalf("after the rebuild: %+v, %v", mi, err)
	}
}

// TestSearchNeverNamesDeleted tombstones products while searches for exactly those products run,
// through the index and by the exact scan: no search names a product whose tombstone had
// committed before the search began.
func TestSearchNeverNamesDeleted(t *testing.T) {
	v := newVecStore(t, "pgvector")
	const n = 8000
	v.write(1, 1, n+1, false)
	if _, err := v.s.BuildIndex(v.ctx, v.emb.Model(), DefaultDim, 1, false, nil); err != nil {
		t.Fatal(err)
	}
	var deletedUpTo atomic.Int64 // products 1..deletedUpTo have committed tombstones
	done := make(chan error, 1)
	go func() {
		for lo := int64(1); lo <= n/2; lo += 50 {
			if err := v.tryWrite(1, lo, lo+50, true); err != nil {
				done <- err
				return
			}
			deletedUpTo.Store(lo + 49)
		}
		done <- nil
	}()
	searches, hitsOnDeleted := 0, 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		before := deletedUpTo.Load()
		// The next products to go, and one just gone: what a user would search for.
		for _, exact := range []bool{false, true} {
			r := v.search(v.query(before+1), SearchOptions{K: 20, Exact: exact})
			searches++
			for _, h := range r.Hits {
				if h.ProductID <= before {
					t.Fatalf("search (exact %v) named product %d, deleted before it began (up to %d)", exact, h.ProductID, before)
				}
				if h.ProductID <= before+50 {
					hitsOnDeleted++ // being deleted now: found or not, both are right
				}
			}
		}
	}
	if deletedUpTo.Load() != n/2 || searches < 10 {
		t.Fatalf("%d deleted, %d searches: the searches did not run while the tombstones were written", deletedUpTo.Load(), searches)
	}
	t.Logf("%d searches while deleting, %d hits on products in the batch being deleted", searches, hitsOnDeleted)
}

// TestPartitionCreatedOnce writes the first vectors of a new supplier from two stores at once:
// one creates the partition, the other waits for it, and neither fails.
func TestPartitionCreatedOnce(t *testing.T) {
	v := newVecStore(t, "pgvector")
	s2, err := OpenStore(v.ctx, v.pool)
	if err != nil {
		t.Fatal(err)
	}
	other := &vecStore{t: t, ctx: v.ctx, pool: v.pool, s: s2, emb: v.emb}
	errs := make(chan error, 2)
	for i, w := range []*vecStore{v, other} {
		go func() { errs <- w.tryWrite(7, int64(i*1000+1), int64(i*1000+600), false) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := v.pool.QueryRow(v.ctx, "SELECT count(*) FROM product_embeddings_s7").Scan(&n); err != nil || n != 1198 {
		t.Fatalf("partition of supplier 7: %d rows, %v; want 1198", n, err)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// TestMaintainIndexes runs the encoders' index upkeep: it builds the index of the partition that
// has grown big enough and leaves the small one alone, then rebuilds the index once its
// partition has outgrown its lists.
func TestMaintainIndexes(t *testing.T) {
	t.Parallel() // waits on index builds, in a database of its own
	v := newVecStore(t, "pgvector")
	v.write(1, 1, IndexMinVectors+1001, false)
	v.write(2, 1, 101, false)
	if _, err := v.pool.Exec(v.ctx, "ANALYZE product_embeddings"); err != nil {
		t.Fatal(err)
	}
	model := v.emb.Model()
	ctx, cancel := context.WithCancel(v.ctx)
	done := make(chan error, 1)
	go func() { done <- v.s.MaintainIndexes(ctx, model, DefaultDim, 100*time.Millisecond, testLogger(t)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("MaintainIndexes: %v", err)
		}
	}()
	waitIndex := func(what string, ok func(ModelIndex) bool) ModelIndex {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			mi, err := v.s.Index(v.ctx, model, DefaultDim, true)
			if err != nil {
				t.Fatal(err)
			}
			if ok(mi) {
				return mi
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %+v", what, mi)
			}
		}
	}
	mi := waitIndex("first build", func(mi ModelIndex) bool { return mi.State == IndexBuilt && mi.Partitions[0].State == IndexBuilt })
	if mi.Partitions[1].State != IndexSmall || mi.Partitions[0].Lists != listsFor(IndexMinVectors+1000) {
		t.Fatalf("after the first build: %+v", mi)
	}
	first := mi.Partitions[0].Name
	v.write(1, IndexMinVectors+1001, 22001, false)
	// The maintenance may already be rebuilding: CREATE or DROP INDEX CONCURRENTLY holds the
	// partition and waits for older transactions (ANALYZE's among them) while ANALYZE waits
	// for the partition, and the deadlock detector cancels one (it failed a run so). The
	// maintenance retries at its next interval; ours is set-up: run it again.
	for i := 0; ; i++ {
		_, err := v.pool.Exec(v.ctx, "ANALYZE product_embeddings")
		var pgErr *pgconn.PgError
		if err == nil {
			break
		}
		if !errors.As(err, &pgErr) || pgErr.Code != "40P01" || i == 5 {
			t.Fatal(err)
		}
		t.Logf("ANALYZE deadlocked with the index build, again: %v", err)
	}
	mi = waitIndex("the rebuild", func(mi ModelIndex) bool {
		return mi.Partitions[0].State == IndexBuilt && mi.Partitions[0].Name != first
	})
	// The writes commit 500 at a time, and the maintenance (every 100ms) rebuilds as soon as
	// the partition calls for indexGrowth × the first index's lists: at any count from 20,000
	// to the last 22,000 (a run rebuilt at 21 lists so).
	firstLists := listsFor(IndexMinVectors + 1000)
	if l := mi.Partitions[0].Lists; l < indexGrowth*firstLists || l > listsFor(22000) || mi.Partitions[0].Stale {
		t.Fatalf("after the rebuild: %+v, want %d to %d lists", mi.Partitions[0], indexGrowth*firstLists, listsFor(22000))
	}
	// The new index is valid once its CREATE INDEX CONCURRENTLY ends; the build drops the
	// replaced one after that (DROP INDEX CONCURRENTLY waits for older transactions), so a
	// check right away can find it still there (it failed a run so).
	deadline := time.Now().Add(time.Minute)
	for {
		var old bool
		if err := v.pool.QueryRow(v.ctx, "SELECT to_regclass($1) IS NOT NULL", first).Scan(&old); err != nil {
			t.Fatal(err)
		}
		if !old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replaced index %s is still there a minute after the rebuild", first)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
