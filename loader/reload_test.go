package loader_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

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
