package loader_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/loader"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// newDB returns a pool on a fresh, migrated database.
func newDB(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	url := testenv.Database(t)
	pool := testenv.Pool(t, url)
	if _, err := catalog.Migrate(testenv.Context(t, time.Minute), pool); err != nil {
		t.Fatal(err)
	}
	return pool, url
}

// load runs one load of input and returns its result and the rejects written.
func load(t *testing.T, pool *pgxpool.Pool, format loader.Format, input string, opts loader.Options) (loader.Result, []map[string]any, error) {
	t.Helper()
	ctx := testenv.Context(t, 2*time.Minute)
	rd, err := loader.Open(strings.NewReader(input), format)
	if err != nil {
		return loader.Result{}, nil, err
	}
	var rejects bytes.Buffer
	opts.Rejects = &rejects
	if opts.Supplier == 0 {
		opts.Supplier = 7
	}
	res, err := loader.Load(ctx, pool, rd, opts)
	return res, rejectLines(t, &rejects), err
}

func mustLoad(t *testing.T, pool *pgxpool.Pool, format loader.Format, input string, opts loader.Options) (loader.Result, []map[string]any) {
	t.Helper()
	res, rejects, err := load(t, pool, format, input, opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return res, rejects
}

type product struct {
	SKU, Name, Status, Attributes string
	Description, Price, Currency  *string
	UpdatedAt                     time.Time
}

func products(t *testing.T, pool *pgxpool.Pool, supplier int32) map[string]product {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT sku, name, status, attributes::text, description,
		price::text, currency, updated_at FROM products WHERE supplier_id = $1`, supplier)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]product{}
	for rows.Next() {
		var p product
		if err := rows.Scan(&p.SKU, &p.Name, &p.Status, &p.Attributes, &p.Description, &p.Price, &p.Currency, &p.UpdatedAt); err != nil {
			t.Fatal(err)
		}
		out[p.SKU] = p
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func str(p *string) string {
	if p == nil {
		return "NULL"
	}
	return *p
}

func TestLoadValidatesAndRejects(t *testing.T) {
	pool, _ := newDB(t)
	input := "sku,name,description,price,currency,status,attributes\n" +
		"A,Apple,\"red, round\nand sweet\",1.50,eur,,\"{\"\"k\"\": 1}\"\n" + // lines 2-3
		"B,Banana,,,,active,\n" + // 4
		",No sku,,,,,\n" + // 5
		"C,,,,,,\n" + // 6
		"D,Date,,1.234,,,\n" + // 7
		"E,Elder,,-1,,,\n" + // 8
		"F,Fig,,,EURO,,\n" + // 9
		"G,Grape,,,,,[1]\n" + // 10
		"H,Hazel,,abc,,,\n" + // 11
		"I,Ice,,99999999999,,,\n" // 12
	res, rejects := mustLoad(t, pool, loader.CSV, input, loader.Options{MaxRejects: -1})
	if res.Inserted != 2 || res.Rejected != 8 || res.Updated != 0 || res.Unchanged != 0 {
		t.Fatalf("result %+v", res)
	}
	wantRejects := map[float64]string{
		5: "sku: empty", 6: "name: missing", 7: `price: more than 2 decimals ("1.234")`, 8: `price: negative ("-1")`,
		9: `currency: not 3 letters ("EURO")`, 10: "attributes: not a JSON object", 11: `price: not a decimal number ("abc")`,
		12: `price: over 9999999999.99 ("99999999999")`,
	}
	if len(rejects) != len(wantRejects) {
		t.Fatalf("rejects %v", rejects)
	}
	for _, r := range rejects {
		line, _ := r["line"].(float64)
		if r["reason"] != wantRejects[line] {
			t.Errorf("line %v: reason %q, want %q", line, r["reason"], wantRejects[line])
		}
		if rec, _ := r["record"].(map[string]any); rec == nil || rec["sku"] == nil {
			t.Errorf("line %v: record %v lacks the raw fields", line, r["record"])
		}
	}
	got := products(t, pool, 7)
	a, b := got["A"], got["B"]
	if a.Name != "Apple" || str(a.Description) != "red, round\nand sweet" || str(a.Price) != "1.50" ||
		str(a.Currency) != "EUR" || a.Status != "pending" || a.Attributes != `{"k": 1}` {
		t.Errorf("A = %+v", a)
	}
	if b.Description != nil || b.Price != nil || b.Currency != nil || b.Status != "active" || b.Attributes != "{}" {
		t.Errorf("B = %+v", b)
	}
	if len(got) != 2 {
		t.Errorf("products %v", got)
	}
}

func TestLoadNDJSON(t *testing.T) {
	pool, _ := newDB(t)
	input := `{"sku":"A","name":"Apple","price":"1.50","attributes":{"colour":"red"}}
{"sku":"B","name":"Banana","price":2.5,"currency":"usd","description":null}
{"sku":"C","name":"Cherry","price":1.005}
`
	res, rejects := mustLoad(t, pool, loader.NDJSON, input, loader.Options{MaxRejects: -1})
	if res.Inserted != 2 || res.Rejected != 1 || len(rejects) != 1 || rejects[0]["line"] != 3.0 {
		t.Fatalf("result %+v, rejects %v", res, rejects)
	}
	if rec, _ := rejects[0]["record"].(map[string]any); rec["sku"] != "C" {
		t.Errorf("raw record %v", rejects[0]["record"])
	}
	got := products(t, pool, 7)
	if str(got["A"].Price) != "1.50" || got["A"].Attributes != `{"colour": "red"}` || str(got["B"].Price) != "2.50" || str(got["B"].Currency) != "USD" {
		t.Fatalf("products %+v", got)
	}
}

func TestDuplicatesLastOccurrenceWins(t *testing.T) {
	pool, _ := newDB(t)
	input := "sku,name,price\nA,first,1\nB,only,2\nA,second,3\nA,third,4\nC,bad,x\nC,good,5\n"
	res, _ := mustLoad(t, pool, loader.CSV, input, loader.Options{MaxRejects: -1})
	if res.Inserted != 3 || res.Duplicates != 2 || res.Rejected != 1 {
		t.Fatalf("result %+v", res)
	}
	got := products(t, pool, 7)
	if got["A"].Name != "third" || str(got["A"].Price) != "4.00" || got["C"].Name != "good" {
		t.Fatalf("products %+v", got)
	}

	// Again into the now full partition (the staging path rather than the direct COPY).
	input = "sku,name,price\nA,again,1\nB,only,2\nA,third,4\nD,new,1\nD,newer,2\n"
	res, _ = mustLoad(t, pool, loader.CSV, input, loader.Options{MaxRejects: -1})
	if res.Inserted != 1 || res.Duplicates != 2 || res.Unchanged != 2 || res.Updated != 0 {
		t.Fatalf("second load %+v", res)
	}
	if got := products(t, pool, 7); got["A"].Name != "third" || got["D"].Name != "newer" || len(got) != 4 {
		t.Fatalf("products %+v", got)
	}
}

// TestFilterFalsePositives loads with a filter so small that most skus look seen before: the
// rows set aside must still load once each, and none count as duplicates.
func TestFilterFalsePositives(t *testing.T) {
	defer loader.SetFilterBits(64)()
	pool, _ := newDB(t)
	res, _ := mustLoad(t, pool, loader.CSV, drop(500, 0, "S000001,dup,,,,\n"), loader.Options{MaxRejects: -1})
	if res.Inserted != 500 || res.Duplicates != 1 || res.Unchanged != 0 || res.Updated != 0 {
		t.Fatalf("result %+v", res)
	}
	got := products(t, pool, 7)
	if len(got) != 500 || got["S000001"].Name != "dup" || str(got["S000002"].Price) != "3.02" {
		t.Fatalf("%d products, S000001 %+v, S000002 %+v", len(got), got["S000001"], got["S000002"])
	}
}

func drop(n int, changedEvery int, extra string) string {
	var b strings.Builder
	b.WriteString("sku,name,description,price,currency,attributes\n")
	for i := 0; i < n; i++ {
		price := fmt.Sprintf("%d.%02d", 1+i%500, i%100)
		if changedEvery > 0 && i%changedEvery == 0 {
			price = fmt.Sprintf("%d.%02d", 1000+i%500, i%100)
		}
		fmt.Fprintf(&b, "S%06d,Product %d,\"Desc, %d\",%s,eur,\"{\"\"size\"\": %d, \"\"tags\"\": [\"\"a\"\"]}\"\n", i, i, i, price, i%40)
	}
	b.WriteString(extra)
	return b.String()
}

// slotChanges returns the row changes of products a logical slot saw since the last call. (A
// load also writes its record to tidemark_loads, which no publication carries.)
func slotChanges(t *testing.T, pool *pgxpool.Pool, slot string) []string {
	t.Helper()
	// Decoding stops at the flushed WAL, and the test cluster commits asynchronously: wait for
	// the WAL writer to flush what has been written so far.
	ctx := testenv.Context(t, 30*time.Second)
	var target string
	if err := pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&target); err != nil {
		t.Fatal(err)
	}
	for {
		var flushed bool
		if err := pool.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn", target).Scan(&flushed); err != nil {
			t.Fatal(err)
		}
		if flushed {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return testenv.Column[string](context.Background(), t, pool,
		`SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL) WHERE data LIKE 'table public.products%'`, slot)
}

func TestReloadWritesOnlyRealChanges(t *testing.T) {
	pool, _ := newDB(t)
	const n = 2000
	base := drop(n, 0, "")
	res, _ := mustLoad(t, pool, loader.CSV, base, loader.Options{MaxRejects: -1})
	if res.Inserted != n {
		t.Fatalf("fresh load %+v", res)
	}
	before := products(t, pool, 7)

	const slot = "loader_test"
	if _, err := pool.Exec(context.Background(), "SELECT pg_create_logical_replication_slot($1, 'test_decoding')", slot); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot) })

	// The same drop again (attributes written differently but equal as jsonb): no row changes.
	same := strings.ReplaceAll(base, `{""size"": `, `{ ""size"":`)
	res, _ = mustLoad(t, pool, loader.CSV, same, loader.Options{MaxRejects: -1})
	if res.Unchanged != n || res.Inserted != 0 || res.Updated != 0 {
		t.Fatalf("identical reload %+v", res)
	}
	if changes := slotChanges(t, pool, slot); len(changes) != 0 {
		t.Fatalf("identical reload wrote %d row changes, e.g. %s", len(changes), changes[0])
	}
	for sku, p := range products(t, pool, 7) {
		if !p.UpdatedAt.Equal(before[sku].UpdatedAt) {
			t.Fatalf("%s: updated_at moved on an identical reload", sku)
		}
	}

	// 10% changed and two new rows: exactly those are written.
	res, _ = mustLoad(t, pool, loader.CSV, drop(n, 10, "N1,New one,,,,\nN2,New two,,,,\n"), loader.Options{MaxRejects: -1})
	if res.Updated != n/10 || res.Inserted != 2 || res.Unchanged != n-n/10 {
		t.Fatalf("10%% reload %+v", res)
	}
	changes := slotChanges(t, pool, slot)
	var updates, inserts int
	for _, c := range changes {
		switch {
		case strings.Contains(c, ": UPDATE:"):
			updates++
		case strings.Contains(c, ": INSERT:"):
			inserts++
		}
	}
	if updates != n/10 || inserts != 2 || len(changes) != n/10+2 {
		t.Fatalf("slot saw %d updates, %d inserts, %d changes", updates, inserts, len(changes))
	}
	after := products(t, pool, 7)
	if !after["S000000"].UpdatedAt.After(before["S000000"].UpdatedAt) || !after["S000001"].UpdatedAt.Equal(before["S000001"].UpdatedAt) {
		t.Fatal("updated_at must move for the changed row only")
	}
}

func TestFullLoad(t *testing.T) {
	pool, _ := newDB(t)
	mustLoad(t, pool, loader.CSV, drop(10, 0, ""), loader.Options{MaxRejects: -1})

	// Dropping 6 of 10 is refused, and nothing is written.
	res, _, err := load(t, pool, loader.CSV, drop(4, 0, "NEW,new,,,,\n"), loader.Options{MaxRejects: -1, Full: true})
	if !errors.Is(err, loader.ErrFullWouldDeleteTooMuch) {
		t.Fatalf("got %+v, %v; want ErrFullWouldDeleteTooMuch", res, err)
	}
	if got := products(t, pool, 7); len(got) != 10 {
		t.Fatalf("refused full load left %d products", len(got))
	}

	// Dropping 4 of 10 is fine; a rejected record keeps its product.
	input := drop(6, 0, "")
	input = strings.Replace(input, "S000005,Product 5,\"Desc, 5\",6.05", "S000005,Product 5,\"Desc, 5\",bad", 1)
	res, _ = mustLoad(t, pool, loader.CSV, input, loader.Options{MaxRejects: -1, Full: true})
	if res.Deleted != 4 || res.Unchanged != 5 || res.Rejected != 1 {
		t.Fatalf("full load %+v", res)
	}
	got := products(t, pool, 7)
	if len(got) != 6 || got["S000005"].SKU == "" || got["S000006"].SKU != "" {
		t.Fatalf("after full load: %v", got)
	}

	// --force lets it empty the catalogue down to one product.
	res, _ = mustLoad(t, pool, loader.CSV, "sku,name\nX,x\n", loader.Options{MaxRejects: -1, Full: true, Force: true})
	if res.Deleted != 6 || res.Inserted != 1 {
		t.Fatalf("forced full load %+v", res)
	}
	if got := products(t, pool, 7); len(got) != 1 {
		t.Fatalf("after forced full load: %v", got)
	}
}

// TestFullKeepsProductsOfUnparsedRecords: a record rejected before validation (a field of
// the wrong JSON type, a CSV row with an extra field) still names its sku.
func TestFullKeepsProductsOfUnparsedRecords(t *testing.T) {
	pool, _ := newDB(t)
	mustLoad(t, pool, loader.CSV, "sku,name\nA,a\nB,b\nC,c\nD,d\n", loader.Options{})
	res, _ := mustLoad(t, pool, loader.NDJSON, `{"sku":"A","name":"a"}
{"sku":"B","name":"b"}
{"sku":"C","name":"c"}
{"description":5,"sku":"D","name":"d"}
`, loader.Options{Full: true, MaxRejects: -1})
	if got := products(t, pool, 7); len(got) != 4 || res.Rejected != 1 || res.Deleted != 0 {
		t.Fatalf("NDJSON: %+v, products %v", res, got)
	}
	res, _ = mustLoad(t, pool, loader.CSV, "sku,name\nA,a\nB,b\nC,c,extra\nD,d\n", loader.Options{Full: true, MaxRejects: -1})
	if got := products(t, pool, 7); len(got) != 4 || res.Rejected != 1 || res.Deleted != 0 {
		t.Fatalf("CSV: %+v, products %v", res, got)
	}
}

func TestMaxRejectsLeavesNothingBehind(t *testing.T) {
	pool, _ := newDB(t)
	input := drop(100, 0, "bad,,,,,\nworse,,,,,\n")
	if _, _, err := load(t, pool, loader.CSV, input, loader.Options{MaxRejects: 1, Supplier: 9}); !errors.Is(err, loader.ErrTooManyRejects) {
		t.Fatalf("got %v, want ErrTooManyRejects", err)
	}
	var suppliers, partitions int
	if err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM suppliers),
		(SELECT count(*) FROM pg_inherits WHERE inhparent = 'products'::regclass)`).Scan(&suppliers, &partitions); err != nil {
		t.Fatal(err)
	}
	if suppliers != 0 || partitions != 0 {
		t.Fatalf("a failed load left %d suppliers, %d partitions", suppliers, partitions)
	}
	// At the limit it loads.
	res, _ := mustLoad(t, pool, loader.CSV, input, loader.Options{MaxRejects: 2, Supplier: 9})
	if res.Inserted != 100 || res.Rejected != 2 {
		t.Fatalf("result %+v", res)
	}
}

func TestConcurrentLoads(t *testing.T) {
	pool, _ := newDB(t)
	input := drop(20000, 0, "")
	var wg sync.WaitGroup
	results := make([]loader.Result, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Two loads each for suppliers 1 and 2. Without the per-supplier lock, the second
			// load of a supplier would insert the same new skus and fail on the unique index.
			results[i], _, errs[i] = load(t, pool, loader.CSV, input, loader.Options{MaxRejects: -1, Supplier: int32(1 + i%2)})
		}()
	}
	wg.Wait()
	for s := 0; s < 2; s++ {
		a, b := results[s], results[s+2]
		if errs[s] != nil || errs[s+2] != nil {
			t.Fatalf("supplier %d: %v, %v", s+1, errs[s], errs[s+2])
		}
		if a.Inserted+b.Inserted != 20000 || a.Unchanged+b.Unchanged != 20000 {
			t.Fatalf("supplier %d: results %+v and %+v; want one insert and one unchanged load", s+1, a, b)
		}
	}
}
