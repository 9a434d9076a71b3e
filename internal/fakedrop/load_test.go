package fakedrop_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidemark/tidemark/internal/fakedrop"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/loader"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The drops load into PostgreSQL with no reject and read back as generated; a 10% reload
// updates exactly the changed products and finds the others unchanged.
func TestLoadAndReload(t *testing.T) {
	ctx := testenv.Context(t, 3*time.Minute)
	pool := testenv.Migrated(ctx, t, testenv.Database(t))
	dir := t.TempDir()
	load := func(s fakedrop.Supplier, file string, full bool) loader.Result {
		t.Helper()
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		format, _ := loader.FormatOf(file)
		rd, err := loader.Open(bufio.NewReader(f), format)
		if err != nil {
			t.Fatal(err)
		}
		res, err := loader.Load(ctx, pool, rd, loader.Options{Supplier: s.ID, Full: full, MaxRejects: 0})
		if err != nil {
			t.Fatalf("load %s: %v", filepath.Base(file), err)
		}
		return res
	}
	const n, pct = 3000, 10
	for i, s := range fakedrop.Suppliers {
		testenv.AddSupplier(ctx, t, pool, s.ID, s.Name)
		d := fakedrop.New(s, 11)
		first := filepath.Join(dir, []string{"first.csv", "first.ndjson.gz", "first.csv.gz"}[i])
		if err := fakedrop.WriteFile(first, d.Products(n)); err != nil {
			t.Fatal(err)
		}
		if res := load(s, first, false); res.Inserted != n || res.Rejected != 0 {
			t.Fatalf("%s: first drop %+v, want %d inserted and no reject", s.Name, res, n)
		}

		// As stored, every product is as generated.
		rows, err := pool.Query(ctx, `SELECT sku, name, description, price::text, currency, status, attributes::text
			FROM products WHERE supplier_id = $1 ORDER BY sku`, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		var p fakedrop.Product
		var attrs string
		k := 0
		_, err = pgx.ForEachRow(rows, []any{&p.SKU, &p.Name, &p.Description, &p.Price, &p.Currency, &p.Status, &attrs}, func() error {
			if err := json.Unmarshal([]byte(attrs), &p.Attributes); err != nil {
				t.Fatalf("stored attributes %s: %v", attrs, err)
			}
			if want := d.Product(k); !equal(p, want) {
				t.Fatalf("stored\n%+v\nwant\n%+v", p, want)
			}
			p, k = fakedrop.Product{}, k+1
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if k != n {
			t.Fatalf("%s: %d products stored, want %d", s.Name, k, n)
		}

		reload := filepath.Join(dir, "reload-"+filepath.Base(first))
		if err := fakedrop.WriteFile(reload, d.Reload(n, pct)); err != nil {
			t.Fatal(err)
		}
		res := load(s, reload, true)
		if res.Updated != n*pct/100 || res.Unchanged != n-n*pct/100 || res.Inserted != 0 || res.Deleted != 0 || res.Rejected != 0 {
			t.Errorf("%s: %d%% reload %+v, want %d updated and %d unchanged", s.Name, pct, res, n*pct/100, n-n*pct/100)
		}
	}
}
