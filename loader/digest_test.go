package loader_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/loader"
)

// TestHashMatchesPostgres checks the client's hash_bytes_extended against hashtextextended on
// strings of every length class the word-wise loop and its tail handle, ASCII and not.
func TestHashMatchesPostgres(t *testing.T) {
	pool, _ := newDB(t)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcXYZ019 ,\"\\()é€😀\t")
	var texts []string
	for n := 0; n < 300; n++ {
		var b strings.Builder
		for i := 0; i < n%70; i++ {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	for _, seed := range []int64{0, 1, -1, 0x7469_6465_6d61_726b} {
		rows, err := pool.Query(context.Background(), "SELECT hashtextextended(t, $2) FROM unnest($1::text[]) t", texts, seed)
		if err != nil {
			t.Fatal(err)
		}
		i := 0
		for rows.Next() {
			var want int64
			if err := rows.Scan(&want); err != nil {
				t.Fatal(err)
			}
			if got := int64(loader.HashBytesExtended([]byte(texts[i]), uint64(seed))); got != want {
				t.Errorf("seed %d, %q: got %d, want %d", seed, texts[i], got, want)
			}
			// The reload's two hashes in one pass: seed 0's and this seed's.
			h0, h1 := loader.HashBytesExtended2([]byte(texts[i]), uint64(seed))
			if h0 != loader.HashBytesExtended([]byte(texts[i]), 0) || int64(h1) != want {
				t.Errorf("seed %d, %q: the pair got %d, %d, want %d, %d", seed, texts[i],
					int64(h0), int64(h1), int64(loader.HashBytesExtended([]byte(texts[i]), 0)), want)
			}
			i++
		}
		if rows.Err() != nil || i != len(texts) {
			t.Fatalf("%d rows, %v", i, rows.Err())
		}
	}
}

// TestRecordFieldMatchesPostgres checks the client's quoting of a row text field against
// record_out on strings dense in what it quotes and doubles: quotes and backslashes next to
// each other, in either order, at either end.
func TestRecordFieldMatchesPostgres(t *testing.T) {
	pool, _ := newDB(t)
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []rune("ab\"\\\"\\(), \t\né")
	// Each byte that makes record_out quote, alone in a word; then random strings.
	texts := []string{"", `"`, `\`, `""`, `\\`, `"\`, `\"`, "plain", "é", "a,b", "a(b", "a)b", "a b",
		"a\tb", "a\nb", "a\vb", "a\fb", "a\rb", "a;b", "a'b", "a{b}"}
	for n := 0; n < 400; n++ {
		var b strings.Builder
		for i := 0; i < n%40; i++ {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	rows, err := pool.Query(context.Background(), "SELECT row(t)::text FROM unnest($1::text[]) t", texts)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var want string
		if err := rows.Scan(&want); err != nil {
			t.Fatal(err)
		}
		if got := "(" + string(loader.AppendRecordField(nil, texts[i])) + ")"; got != want {
			t.Errorf("%q: got %s, want %s", texts[i], got, want)
		}
	}
	if rows.Err() != nil || i != len(texts) {
		t.Fatalf("%d rows, %v", i, rows.Err())
	}
}

// TestReloadSkipsEqualRows reloads awkward rows unchanged: the client's digest of each must
// equal the one PostgreSQL computes of the stored row, so none is staged. Attributes the
// loader does not canonicalise (exponents) are staged and found unchanged by the MERGE.
func TestReloadSkipsEqualRows(t *testing.T) {
	pool, _ := newDB(t)
	records := [][]string{
		{"plain", "Name", "", "", "", "", ""},
		{"sp ace", "tab\there", "line\nbreak", "007.5", "eur", "active", `{"b":1,"a":2,"aa":[1,2.50,-0],"a":3}`},
		{`q"uote`, `back\slash`, "(paren)", "5", "USD", "pending", `{"s":"é \u00e9 \ud83d\ude00 \"q\" \\ \/ \n"}`},
		{"com,ma", "ünïcødé 😀", "", ".5", "gbp", "", `{}`},
		{"+sign", "x", "y", "+5.000", "", "", `{"nested":{"deep":[{"k":null,"t":true,"f":false}]}}`},
		{"zero", "x", " ", "-0", "", "on hold", `{"n":12345678901234567890.123}`},
		{"max", "x", "", "9999999999.99", "", "", `{"e":1e3}`},
		{"empty-attrs", `"`, `""`, "0", "", "", ""},
	}
	var b strings.Builder
	b.WriteString("sku,name,description,price,currency,status,attributes\n")
	for _, r := range records {
		for i, f := range r {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`"` + strings.ReplaceAll(f, `"`, `""`) + `"`)
		}
		b.WriteByte('\n')
	}
	input := b.String()
	res, _ := mustLoad(t, pool, loader.CSV, input, loader.Options{MaxRejects: 0})
	if res.Inserted != int64(len(records)) {
		t.Fatalf("first load %+v", res)
	}
	res, _ = mustLoad(t, pool, loader.CSV, input, loader.Options{MaxRejects: 0})
	if res.Unchanged != int64(len(records)) || res.Updated != 0 {
		t.Fatalf("reload %+v", res)
	}
	if got, want := loader.Skipped(res), int64(len(records)-1); got != want {
		t.Errorf("reload left out %d records as unchanged, want %d (all but the exponent)", got, want)
	}

	// A change in any column is seen.
	for col := 1; col < 7; col++ {
		changed := strings.Replace(input, `"plain","Name","","","","",""`, fmt.Sprintf(`"plain",%s`, changeColumn(col)), 1)
		res, _ = mustLoad(t, pool, loader.CSV, changed, loader.Options{MaxRejects: 0})
		if res.Updated != 1 {
			t.Errorf("column %s changed: %+v", loader.Columns[col], res)
		}
		mustLoad(t, pool, loader.CSV, input, loader.Options{MaxRejects: 0})
	}
}

// changeColumn renders the fields after the sku of the "plain" record with column col set.
func changeColumn(col int) string {
	f := []string{"Name", "", "", "", "", ""}
	f[col-1] = map[int]string{1: "Other", 2: "desc", 3: "1.00", 4: "EUR", 5: "active", 6: `{"a":1}`}[col]
	var parts []string
	for _, v := range f {
		parts = append(parts, `"`+strings.ReplaceAll(v, `"`, `""`)+`"`)
	}
	return strings.Join(parts, ",")
}
