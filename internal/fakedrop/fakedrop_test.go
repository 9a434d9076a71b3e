package fakedrop_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidemark/tidemark/internal/fakedrop"
	"github.com/tidemark/tidemark/loader"
)

func csvBytes(t *testing.T, d *fakedrop.Drop, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := fakedrop.WriteCSV(&b, d.Products(n)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Same seed, same bytes; product i does not depend on how many are generated.
func TestDeterministic(t *testing.T) {
	for _, s := range fakedrop.Suppliers {
		t.Run(s.Name, func(t *testing.T) {
			a, b := csvBytes(t, fakedrop.New(s, 42), 2000), csvBytes(t, fakedrop.New(s, 42), 2000)
			if !bytes.Equal(a, b) {
				t.Fatal("two drops of one seed differ")
			}
			if c := csvBytes(t, fakedrop.New(s, 43), 2000); bytes.Equal(a, c) {
				t.Fatal("seeds 42 and 43 give the same drop")
			}
			short := csvBytes(t, fakedrop.New(s, 42), 500)
			if !bytes.HasPrefix(a, short) {
				t.Error("the first 500 products of a 2000-product drop differ from a 500-product drop")
			}
			var nd1, nd2 bytes.Buffer
			d := fakedrop.New(s, 42)
			if err := fakedrop.WriteNDJSON(&nd1, d.Reload(2000, 10)); err != nil {
				t.Fatal(err)
			}
			if err := fakedrop.WriteNDJSON(&nd2, fakedrop.New(s, 42).Reload(2000, 10)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(nd1.Bytes(), nd2.Bytes()) {
				t.Error("two reloads of one seed differ")
			}
			i := 0
			for p := range d.Products(100) {
				if q := d.Product(i); !equal(p, q) {
					t.Fatalf("Products' %dth is %+v, Product(%d) %+v", i, p, i, q)
				}
				i++
			}
		})
	}
	if a, b := fakedrop.New(fakedrop.Suppliers[0], 1).Product(0), fakedrop.New(fakedrop.Suppliers[1], 1).Product(0); a.Description == b.Description {
		t.Error("two suppliers, one description")
	}
}

func equal(a, b fakedrop.Product) bool {
	return string(a.AppendJSON(nil)) == string(b.AppendJSON(nil))
}

// A reload changes exactly pct of every 100 products, each in one of price, name or
// description, and leaves the rest byte for byte.
func TestReload(t *testing.T) {
	const n, pct = 3000, 10
	kinds := map[string]int{}
	for _, s := range fakedrop.Suppliers {
		d := fakedrop.New(s, 7)
		i, changed := 0, 0
		for p := range d.Reload(n, pct) {
			o := d.Product(i)
			if fakedrop.IsChanged(i, pct) != !equal(p, o) {
				t.Fatalf("%s product %d: IsChanged %v, but reload %+v, first drop %+v", s.Name, i, fakedrop.IsChanged(i, pct), p, o)
			}
			if !equal(p, o) {
				changed++
				if c := d.Changed(i); !equal(p, c) {
					t.Fatalf("product %d: reload %+v, Changed %+v", i, p, c)
				}
				var diff []string
				if p.Price != o.Price {
					diff = append(diff, "price")
				}
				if p.Name != o.Name {
					diff = append(diff, "name")
				}
				if p.Description != o.Description {
					diff = append(diff, "description")
				}
				p.Price, p.Name, p.Description = o.Price, o.Name, o.Description
				if len(diff) != 1 || !equal(p, o) {
					t.Fatalf("product %d: changed %v, want one of price, name, description and nothing else", i, diff)
				}
				kinds[diff[0]]++
				checkProduct(t, p)
			}
			i++
		}
		if changed != n*pct/100 {
			t.Errorf("%s: %d of %d changed, want %d", s.Name, changed, n, n*pct/100)
		}
	}
	t.Logf("changes: %v", kinds)
	total := kinds["price"] + kinds["name"] + kinds["description"]
	if p := float64(kinds["price"]) / float64(total); p < 0.4 || p > 0.6 {
		t.Errorf("price changes are %.0f%% of the changes, want about half", 100*p)
	}
	if kinds["name"] < total/6 || kinds["description"] < total/6 {
		t.Errorf("changes %v: want about a quarter each of names and descriptions", kinds)
	}
}

// checkProduct checks the shape every product has.
func checkProduct(t *testing.T, p fakedrop.Product) {
	t.Helper()
	for _, f := range []string{p.SKU, p.Name, p.Description, p.Price, p.Currency, p.Status} {
		if !utf8.ValidString(f) || f == "" {
			t.Fatalf("%+v: empty or invalid UTF-8 field %q", p, f)
		}
	}
	if w := len(strings.Fields(p.Name)); w < 3 || w > 5 {
		t.Errorf("name %q: %d words, want 3-5", p.Name, w)
	}
	if w := len(strings.Fields(p.Description)); w < 40 || w > 60 {
		t.Errorf("description %q: %d words, want 40-60", p.Description, w)
	}
	if _, reason := loader.Validate(&loader.Record{Fields: fields(p)}); reason != "" {
		t.Errorf("%+v: rejected: %s", p, reason)
	}
}

func fields(p fakedrop.Product) [len(loader.Columns)]string {
	return [...]string{p.SKU, p.Name, p.Description, p.Price, p.Currency, p.Status, string(p.Attributes.AppendJSON(nil))}
}

// Every format the writers write reads back through the loader's readers as written, with no
// reject.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"drop.csv", "drop.ndjson", "drop.csv.gz", "drop.ndjson.gz"} {
		t.Run(name, func(t *testing.T) {
			for _, s := range fakedrop.Suppliers {
				d := fakedrop.New(s, 3)
				file := filepath.Join(dir, s.Name+"-"+name)
				const n = 1000
				want := slices.Collect(d.Reload(n, 20))
				if err := fakedrop.WriteFile(file, slices.Values(want)); err != nil {
					t.Fatal(err)
				}
				f, err := os.Open(file)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				format, _ := loader.FormatOf(file)
				rd, err := loader.Open(f, format)
				if err != nil {
					t.Fatal(err)
				}
				i := 0
				for rec, err := range loader.Records(rd) {
					if err != nil {
						t.Fatal(err)
					}
					row, reason := loader.Validate(rec)
					if reason != "" {
						t.Fatalf("line %d rejected: %s", rec.Line, reason)
					}
					w := want[i]
					if row.SKU != w.SKU || row.Name != w.Name || *row.Description != w.Description || *row.Price != w.Price ||
						*row.Currency != w.Currency || row.Status != w.Status {
						t.Fatalf("record %d reads back as %+v, want %+v", i, row, w)
					}
					var got, attrs fakedrop.Attributes
					if err := json.Unmarshal([]byte(row.Attributes), &got); err != nil {
						t.Fatalf("record %d attributes %s: %v", i, row.Attributes, err)
					}
					attrs = w.Attributes
					if !equal(fakedrop.Product{Attributes: got}, fakedrop.Product{Attributes: attrs}) {
						t.Fatalf("record %d attributes %s, want %s", i, row.Attributes, w.Attributes.AppendJSON(nil))
					}
					i++
				}
				if i != n {
					t.Errorf("read %d records, want %d", i, n)
				}
			}
		})
	}
	if err := fakedrop.WriteFile(filepath.Join(dir, "drop.txt"), nil); err == nil {
		t.Error("a drop named .txt was written")
	}
}

// AppendJSON appends after what the buffer holds, without the Encoder's newline and without
// HTML escaping, and what it writes reads back as the product.
func TestAppendJSON(t *testing.T) {
	p := fakedrop.New(fakedrop.Suppliers[0], 5).Product(7)
	p.Name = `a "quoted" & <tagged> name`
	got := p.AppendJSON([]byte("prefix "))
	text, ok := bytes.CutPrefix(got, []byte("prefix "))
	if !ok || bytes.HasSuffix(got, []byte("\n")) || !bytes.Contains(text, []byte(`& <tagged>`)) {
		t.Fatalf("AppendJSON: %q", got)
	}
	var back fakedrop.Product
	if err := json.Unmarshal(text, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, p) {
		t.Fatalf("read back %+v, want %+v", back, p)
	}
	// The bytes of a drop: keys in field order, no material when there is none, nil tags null.
	for _, c := range []struct {
		p    fakedrop.Product
		want string
	}{
		{fakedrop.Product{}, `{"sku":"","name":"","description":"","price":"","currency":"","status":"","attributes":{"brand":"","category":"","color":"","tags":null,"weight_g":0}}`},
		{fakedrop.Product{SKU: "S-1", Name: "Tromsø <pro>", Price: "9.50", Attributes: fakedrop.Attributes{Material: "wool", Tags: []string{"a\tb"}, WeightG: 120}},
			`{"sku":"S-1","name":"Tromsø <pro>","description":"","price":"9.50","currency":"","status":"","attributes":{"brand":"","category":"","color":"","material":"wool","tags":["a\tb"],"weight_g":120}}`},
	} {
		if got := string(c.p.AppendJSON(nil)); got != c.want {
			t.Errorf("AppendJSON:\n got %s\nwant %s", got, c.want)
		}
	}
}
