package loader_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/internal/fakedrop"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/loader"
)

// TestReloadInChunks reloads random drops in chunks of a few rows, so that skus repeat
// within a chunk, across chunks (the late pile) and after records left out as unchanged; new,
// changed, identical and rejected records mix, with and without --full. After each load the
// table must hold, for every sku of the drop, its last valid record, and every other product
// untouched (or, with --full, gone unless a rejected record names it).
func TestReloadInChunks(t *testing.T) {
	defer loader.SetChunkRows(5)()
	reloadInChunks(t, true)
}

// TestReloadWithCollidingKeys runs the same drops with every sku hashing alike in the
// reload's table: the rows must still end right; only the counts may be off.
func TestReloadWithCollidingKeys(t *testing.T) {
	defer loader.SetChunkRows(5)()
	defer loader.SetSameKeys()()
	reloadInChunks(t, false)

	// Every record finds A's entry: A unchanged, then B changed. A full load keeps both.
	pool, _ := newDB(t)
	mustLoad(t, pool, loader.CSV, "sku,name\nA,a\nB,b\nC,c\n", loader.Options{})
	mustLoad(t, pool, loader.CSV, "sku,name\nA,a\nB,b2\nC,c\n", loader.Options{Full: true})
	got := products(t, pool, 7)
	if len(got) != 3 || got["A"].Name != "a" || got["B"].Name != "b2" || got["C"].Name != "c" {
		t.Fatalf("products %+v", got)
	}
}

func reloadInChunks(t *testing.T, checkCounts bool) {
	pool, _ := newDB(t)
	rng := rand.New(rand.NewPCG(7, 11))
	type values struct{ name, price string }
	current := map[string]values{}

	var base strings.Builder
	base.WriteString("sku,name,price\n")
	for i := 0; i < 60; i++ {
		sku := fmt.Sprintf("K%03d", i)
		current[sku] = values{"base " + sku, "1.00"}
		fmt.Fprintf(&base, "%s,%s,1.00\n", sku, current[sku].name)
	}
	mustLoad(t, pool, loader.CSV, base.String(), loader.Options{MaxRejects: -1})

	for round := 0; round < 12; round++ {
		full := round%3 == 2
		want := map[string]values{}
		named := map[string]bool{} // skus only a rejected record names
		var drop strings.Builder
		drop.WriteString("sku,name,price\n")
		records := 40 + rng.IntN(80)
		for r := 0; r < records; r++ {
			sku := fmt.Sprintf("K%03d", rng.IntN(90)) // a third of them new
			v, ok := current[sku]
			switch k := rng.IntN(10); {
			case k < 4 && ok: // identical to the stored row
			case k == 9: // rejected: a bad price
				fmt.Fprintf(&drop, "%s,bad,-1\n", sku)
				if _, seen := want[sku]; !seen {
					named[sku] = true
				}
				continue
			default:
				v = values{fmt.Sprintf("r%d-%d", round, r), fmt.Sprintf("%d.00", 1+rng.IntN(3))}
			}
			want[sku] = v
			delete(named, sku)
			fmt.Fprintf(&drop, "%s,%s,%s\n", sku, v.name, v.price)
		}
		res, _ := mustLoad(t, pool, loader.CSV, drop.String(), loader.Options{MaxRejects: -1, Full: full, Force: true})
		if got := res.Records(); checkCounts && got != int64(records) {
			t.Fatalf("round %d: counts %+v add up to %d records, want %d", round, res, got, records)
		}
		for sku, v := range want {
			current[sku] = v
		}
		if full {
			for sku := range current {
				if _, ok := want[sku]; !ok && !named[sku] {
					delete(current, sku)
				}
			}
		}
		got := products(t, pool, 7)
		if len(got) != len(current) {
			t.Fatalf("round %d (full %v): %d products, want %d", round, full, len(got), len(current))
		}
		for sku, v := range current {
			if p := got[sku]; p.Name != v.name || str(p.Price) != v.price {
				t.Fatalf("round %d: %s is (%s, %s), want (%s, %s)", round, sku, p.Name, str(p.Price), v.name, v.price)
			}
		}
	}
}

// TestReloadCountsAcrossChunks pins the counts where records of one sku fall in one chunk,
// in two chunks, and around a record left out as unchanged.
func TestReloadCountsAcrossChunks(t *testing.T) {
	defer loader.SetChunkRows(2)()
	pool, _ := newDB(t)
	mustLoad(t, pool, loader.CSV, "sku,name\nA,a\nB,b\nC,c\nD,d\n", loader.Options{})

	// Chunks of two staged rows: [A a2, B b2] [C c2, E] [F], and the late pile [B b3, C c3].
	// A: identical, then changed (the identical one is overridden). B and C: changed, then
	// changed again in a later chunk. D: identical twice.
	input := "sku,name\nA,a\nA,a2\nB,b2\nB,b3\nC,c2\nE,e\nD,d\nD,d\nF,f\nC,c3\n"
	res, _ := mustLoad(t, pool, loader.CSV, input, loader.Options{})
	if res.Inserted != 2 || res.Updated != 3 || res.Unchanged != 1 || res.Duplicates != 4 {
		t.Errorf("counts %+v; want 2 inserted (E, F), 3 updated (A, B, C), 1 unchanged (D), 4 duplicates", res)
	}
	got := products(t, pool, 7)
	for sku, name := range map[string]string{"A": "a2", "B": "b3", "C": "c3", "D": "d", "E": "e", "F": "f"} {
		if got[sku].Name != name {
			t.Errorf("%s: %q, want %q", sku, got[sku].Name, name)
		}
	}
}

// TestReloadRefreshesStaleStatistics: a partition filled by a bulk load into an empty
// partition has no statistics yet; the reload's merges plan on them, so it analyzes first.
func TestReloadRefreshesStaleStatistics(t *testing.T) {
	pool, _ := newDB(t)
	mustLoad(t, pool, loader.CSV, drop(3000, 0, ""), loader.Options{Supplier: 8})
	mustLoad(t, pool, loader.CSV, drop(3000, 10, ""), loader.Options{Supplier: 8})
	var tuples float64
	if err := pool.QueryRow(context.Background(), "SELECT reltuples FROM pg_class WHERE oid = 'products_s8'::regclass").Scan(&tuples); err != nil {
		t.Fatal(err)
	}
	if tuples < 2000 {
		t.Fatalf("planner estimate %v after the reload, want about 3000", tuples)
	}
}

// TestReloadInChunksFilterFalsePositives: with a filter so small it thinks most new skus
// seen, new skus go to the late pile; rows and counts must still come out right.
func TestReloadInChunksFilterFalsePositives(t *testing.T) {
	defer loader.SetChunkRows(5)()
	defer loader.SetFilterBits(64)()
	reloadInChunks(t, true)
}

// TestReloadLateUpdateCounts: X's record in chunk 1 ends up changing nothing (b, then a again),
// and the late record then changes it: one update, two duplicates.
func TestReloadLateUpdateCounts(t *testing.T) {
	defer loader.SetChunkRows(2)()
	pool, _ := newDB(t)
	mustLoad(t, pool, loader.CSV, "sku,name\nX,a\nY,y\n", loader.Options{})
	res, _ := mustLoad(t, pool, loader.CSV, "sku,name\nX,b\nX,a\nX,c\n", loader.Options{})
	if got := products(t, pool, 7); got["X"].Name != "c" {
		t.Fatalf("X is %q, want c", got["X"].Name)
	}
	if res.Updated != 1 || res.Unchanged != 0 || res.Duplicates != 2 {
		t.Errorf("counts %+v; want 1 updated, 0 unchanged, 2 duplicates", res)
	}
}

// TestReloadCollidingKeysTableGrows: the digest table grows while it is filled (the planner
// knew no count) with every sku hashing alike; a --full drop naming one sku must still delete
// all the others.
func TestReloadCollidingKeysTableGrows(t *testing.T) {
	pool, _ := newDB(t)
	var b strings.Builder
	b.WriteString("sku,name\n")
	for i := 0; i < 800; i++ {
		fmt.Fprintf(&b, "K%04d,n%d\n", i, i)
	}
	mustLoad(t, pool, loader.CSV, b.String(), loader.Options{})
	defer loader.SetSameKeys()()
	res, _ := mustLoad(t, pool, loader.CSV, "sku,name\nK0000,n0\n", loader.Options{Full: true, Force: true})
	if got := products(t, pool, 7); len(got) != 1 || got["K0000"].Name != "n0" {
		t.Fatalf("--full left %d products (%+v)", len(got), res)
	}
}

// TestReloadHoldsOffWriters: while a reload runs, another session's write to the partition
// waits for it (the reload compares with digests read at its start).
func TestReloadHoldsOffWriters(t *testing.T) {
	pool, _ := newDB(t)
	mustLoad(t, pool, loader.CSV, "sku,name\nX,a\nY,y\n", loader.Options{})
	var writeErr error
	hook := func() {
		ctx := testenv.Context(t, 10*time.Second)
		tx, err := pool.Begin(ctx)
		if err != nil {
			writeErr = err
			return
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '200ms'"); err != nil {
			writeErr = err
			return
		}
		_, writeErr = tx.Exec(ctx, "UPDATE products SET name = 'other' WHERE supplier_id = 7 AND sku = 'X'")
	}
	rd, err := loader.Open(strings.NewReader("sku,name\nX,a\nY,y2\n"), loader.CSV)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loader.Load(testenv.Context(t, time.Minute), pool, &hookReader{Reader: rd, hook: hook}, loader.Options{Supplier: 7}); err != nil {
		t.Fatal(err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(writeErr, &pgErr) || pgErr.Code != "55P03" {
		t.Fatalf("a write during the reload: %v; want a lock timeout", writeErr)
	}
	if got := products(t, pool, 7); got["X"].Name != "a" || got["Y"].Name != "y2" {
		t.Fatalf("products %+v", got)
	}
}

// hookReader runs hook before the first record: while the load holds its locks.
type hookReader struct {
	loader.Reader
	hook func()
}

func (h *hookReader) Next() (*loader.Record, error) {
	if h.hook != nil {
		h.hook()
		h.hook = nil
	}
	return h.Reader.Next()
}

// failingReader fails after n records.
type failingReader struct {
	loader.Reader
	n int
}

func (f *failingReader) Next() (*loader.Record, error) {
	if f.n == 0 {
		return nil, errors.New("disk on fire")
	}
	f.n--
	return f.Reader.Next()
}

// TestReloadFailsCleanly: a read failing anywhere (before, inside and between chunks), or a
// row the database refuses mid-chunk, leaves nothing written and the connection usable.
func TestReloadFailsCleanly(t *testing.T) {
	defer loader.SetChunkRows(50)()
	pool, url := newDB(t)
	mustLoad(t, pool, loader.CSV, drop(2000, 0, ""), loader.Options{})
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1 // the same connection every time: it must stay usable
	one, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	changed := drop(2000, 1, "")
	ctx := testenv.Context(t, time.Minute)
	unchanged := func(what string) {
		t.Helper()
		var n int
		if err := one.QueryRow(ctx, "SELECT count(*) FROM products WHERE price >= 1000").Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s: %d rows changed, %v", what, n, err)
		}
	}
	for _, after := range []int{0, 49, 51, 1024, 1999} {
		rd, _ := loader.Open(strings.NewReader(changed), loader.CSV)
		_, err := loader.Load(ctx, one, &failingReader{Reader: rd, n: after}, loader.Options{MaxRejects: -1, Supplier: 7})
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("failing after %d records: %v", after, err)
		}
		unchanged(fmt.Sprintf("failing after %d records", after))
	}
	// A number jsonb cannot hold, in the third chunk.
	lines := strings.Split(changed, "\n")
	lines[124] = strings.Replace(lines[124], `"{""size"":`, `"{""n"": 1e200000, ""size"":`, 1)
	rd, _ := loader.Open(strings.NewReader(strings.Join(lines, "\n")), loader.CSV)
	if _, err := loader.Load(ctx, one, rd, loader.Options{MaxRejects: -1, Supplier: 7}); err == nil {
		t.Fatal("a row jsonb refuses: no error")
	}
	unchanged("a row jsonb refuses")
}

// TestReloadLateRowsAfterTheLastChunk: after the last chunk closes, a full batch of records
// that all go to the late pile, and nothing else: they must still be applied.
func TestReloadLateRowsAfterTheLastChunk(t *testing.T) {
	defer loader.SetChunkRows(2)()
	pool, _ := newDB(t)
	mustLoad(t, pool, loader.CSV, "sku,name\nX,x\nY,y\nZ,z\n", loader.Options{})
	var b strings.Builder
	b.WriteString("sku,name\nX,x0\nY,y0\n") // chunk 1, closed
	for i := 1; i <= 1024; i++ {            // one full batch, all late
		fmt.Fprintf(&b, "X,x%d\n", i)
	}
	res, _ := mustLoad(t, pool, loader.CSV, b.String(), loader.Options{Full: true})
	got := products(t, pool, 7)
	if got["X"].Name != "x1024" || got["Y"].Name != "y0" || len(got) != 2 {
		t.Fatalf("products %+v (result %+v)", got, res)
	}
	if res.Updated != 2 || res.Duplicates != 1024 || res.Deleted != 1 {
		t.Errorf("counts %+v; want 2 updated, 1024 duplicates, 1 deleted", res)
	}
}

// TestReloadNamedRowsAfterTheLastChunk: the same for a full batch of rejected records after
// the last chunk; with --full they must keep their products.
func TestReloadNamedRowsAfterTheLastChunk(t *testing.T) {
	defer loader.SetChunkRows(1)()
	pool, _ := newDB(t)
	var stored, drop strings.Builder
	stored.WriteString("sku,name,price\nB,b,1\n")
	drop.WriteString("sku,name,price\nB,b2,1\n") // chunk 1, closed
	for i := 0; i < 1024; i++ {
		fmt.Fprintf(&stored, "A%04d,a,1\n", i)
		fmt.Fprintf(&drop, "A%04d,a,-1\n", i) // rejected, sku named
	}
	mustLoad(t, pool, loader.CSV, stored.String(), loader.Options{})
	res, _ := mustLoad(t, pool, loader.CSV, drop.String(), loader.Options{Full: true, Force: true, MaxRejects: -1})
	if got := products(t, pool, 7); len(got) != 1025 || res.Deleted != 0 || res.Rejected != 1024 || got["B"].Name != "b2" {
		t.Fatalf("%d products left, result %+v", len(got), res)
	}
}

// TestReloadRealisticRows reloads fakedrop's products with a tenth changed, the first hundred
// gone and 150 new (--full). Every unchanged record must be left out on its digest alone,
// which needs the client's row text, attributes rendering and hashes to agree byte for byte
// with PostgreSQL's on realistic text (non-ASCII, quotes, commas, nested JSON); the table must
// end as a fresh load of the same drop leaves it. Then a reload that fails part way, after
// chunks were merged, must leave the table as it was.
func TestReloadRealisticRows(t *testing.T) {
	defer loader.SetChunkRows(64)()
	pool, _ := newDB(t)
	const n, gone, added = 2000, 100, 150
	d := fakedrop.New(fakedrop.Suppliers[1], 5)
	csvOf := func(ps iter.Seq[fakedrop.Product]) string {
		var b strings.Builder
		if err := fakedrop.WriteCSV(&b, ps); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	mustLoad(t, pool, loader.CSV, csvOf(d.Products(n)), loader.Options{MaxRejects: 0})
	before := products(t, pool, 7)

	changed := 0
	for i := gone; i < n; i++ {
		if fakedrop.IsChanged(i, 10) {
			changed++
		}
	}
	reload := csvOf(func(yield func(fakedrop.Product) bool) {
		i := 0
		for p := range d.Reload(n, 10) {
			if i++; i > gone && !yield(p) {
				return
			}
		}
		for p := range d.Range(n, n+added) {
			if !yield(p) {
				return
			}
		}
	})
	res, _ := mustLoad(t, pool, loader.CSV, reload, loader.Options{Full: true, MaxRejects: 0})
	if res.Inserted != added || res.Updated != int64(changed) || res.Deleted != gone ||
		res.Unchanged != int64(n-gone-changed) || res.Rejected != 0 || res.Duplicates != 0 {
		t.Fatalf("reload %+v, want %d inserted, %d updated, %d deleted, %d unchanged", res, added, changed, gone, n-gone-changed)
	}
	if got := loader.Skipped(res); got != res.Unchanged {
		t.Errorf("%d of the %d unchanged records left out on their digest: the others' digests differ from PostgreSQL's", got, res.Unchanged)
	}
	mustLoad(t, pool, loader.CSV, reload, loader.Options{Supplier: 8, MaxRejects: 0})
	got, want := products(t, pool, 7), products(t, pool, 8)
	if len(got) != len(want) {
		t.Fatalf("%d products after the reload, %d after a fresh load of the same drop", len(got), len(want))
	}
	for sku, w := range want {
		g, ok := got[sku]
		g.UpdatedAt, w.UpdatedAt = time.Time{}, time.Time{}
		if !ok || !reflect.DeepEqual(g, w) {
			t.Fatalf("%s after the reload:\n%+v\nafter a fresh load:\n%+v", sku, g, w)
		}
	}

	// A byte that is not UTF-8 stops a load: here in the last record of 20,000, most of them
	// new. The reader runs at most about 13,000 staged rows ahead of the merges (the two
	// channels' capacities at 64-row chunks), so chunks were merged before it; nothing of
	// them may stay.
	after := products(t, pool, 7)
	lines := strings.SplitAfter(csvOf(d.Reload(20000, 50)), "\n")
	last := len(lines) - 2 // the last record; the last element is what follows its newline
	lines[last] = strings.Replace(lines[last], ",", ",\xff", 1)
	var log bytes.Buffer
	_, _, err := load(t, pool, loader.CSV, strings.Join(lines, ""), loader.Options{MaxRejects: -1,
		Log: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("a drop with a byte that is not UTF-8 loaded: %v", err)
	}
	if !strings.Contains(log.String(), "merged chunk") {
		t.Fatal("bad test: the reload failed before it merged a chunk")
	}
	if !reflect.DeepEqual(products(t, pool, 7), after) {
		t.Fatal("the failed reload changed products")
	}
	if reflect.DeepEqual(after, before) {
		t.Fatal("bad test: the first reload changed nothing")
	}
}
