package loader_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/loader"
)

// xval is one value of a drop as its supplier wrote it: text, or a spreadsheet number.
type xval struct {
	text  string
	num   float64
	isNum bool
}

func txt(s string) xval { return xval{text: s} }

// shape is a real-world drop layout: the same products written the way one supplier sends them.
type shape struct {
	name string
	// model lays the products out as the supplier's columns.
	model func(ps []realistic) (header []string, rows []map[string]xval)
	// write renders the drop, with a record whose price is "abc" where badAt says.
	write func(t testing.TB, header []string, rows []map[string]xval) []byte
	// profile reads the drop.
	profile string
	// badLine is where the bad record starts: its line, or its row in a spreadsheet.
	badLine  int64
	priceCol string
	currency bool // the drop has a currency column
	// wrong profiles, each with what its error must say.
	wrong []wrongProfile
}

type wrongProfile struct {
	name, profile string
	want          []string
	is            error
}

// badAt is the position among the records of the bad one.
const badAt = 5

// withBad returns the rows with the bad record inserted at badAt.
func withBad(header []string, rows []map[string]xval, skuCol, priceCol string) []map[string]xval {
	bad := map[string]xval{skuCol: txt("BAD-1"), header[1]: txt("Broken record"), priceCol: txt("abc")}
	out := append([]map[string]xval(nil), rows[:badAt]...)
	out = append(out, bad)
	return append(out, rows[badAt:]...)
}

func textRows(header []string, rows []map[string]xval) [][]string {
	out := [][]string{header}
	for _, r := range rows {
		rec := make([]string, len(header))
		for i, h := range header {
			rec[i] = r[h].text
		}
		out = append(out, rec)
	}
	return out
}

// realisticModel lays out products with the given column names and price format.
func realisticModel(cols [7]string, priceText func(int64) string, padSKU bool) func(ps []realistic) ([]string, []map[string]xval) {
	return func(ps []realistic) ([]string, []map[string]xval) {
		var header []string
		for _, c := range cols {
			if c != "" {
				header = append(header, c)
			}
		}
		rows := make([]map[string]xval, len(ps))
		for i, p := range ps {
			sku := p.SKU
			if padSKU && i%3 == 0 {
				sku = "  " + sku + " "
			}
			r := map[string]xval{cols[0]: txt(sku), cols[1]: txt(p.Name), cols[2]: txt(p.Description),
				cols[4]: txt(p.Color), cols[5]: txt(strconv.Itoa(p.WeightG))}
			if priceText != nil {
				r[cols[3]] = txt(priceText(p.Cents))
			} else {
				r[cols[3]] = xval{num: float64(p.Cents) / 100, isNum: true}
				r[cols[5]] = xval{num: float64(p.WeightG), isNum: true}
			}
			if cols[6] != "" {
				r[cols[6]] = txt("EUR")
			}
			rows[i] = r
		}
		return header, rows
	}
}

var shapes = []shape{
	{
		name: "semicolon, Windows-1252, decimal comma, Dutch headers",
		model: func(ps []realistic) ([]string, []map[string]xval) {
			header, rows := realisticModel([7]string{"Artikelnummer", "Omschrijving", "Lange Omschrijving", "Prijs", "Kleur", "Gewicht (g)", ""},
				func(c int64) string { return price(c, ",", ".") }, false)(ps)
			header = append(header, "Voorraad")
			for i, r := range rows {
				r["Voorraad"] = txt(strconv.Itoa(i % 17))
			}
			return header, rows
		},
		write: func(t testing.TB, header []string, rows []map[string]xval) []byte {
			return encode(t, windows1252, delimited(textRows(header, withBad(header, rows, "Artikelnummer", "Prijs")), ';', '"', "\r\n"))
		},
		profile: `
delimiter: ";"
encoding: windows-1252
decimal: ","
thousands: "."
columns:
  artikelnummer: sku
  Omschrijving: name
  lange omschrijving: description   # case and spaces do not count
  PRIJS: price
attributes:
  Kleur: color
  Gewicht (g): weight_g
ignore: [Voorraad]
constants:
  currency: EUR
`,
		badLine: 8, priceCol: "Prijs",
		wrong: []wrongProfile{
			{"no profile", "", []string{"not valid UTF-8", "looks windows-1252", "encoding: windows-1252"}, loader.ErrEncoding},
			{"no delimiter", "encoding: windows-1252\n", []string{`unknown column "Artikelnummer;Omschrijving;`, `looks ";"-separated`, "delimiter: ';'", "--detect"}, loader.ErrUnknownColumn},
			{"no column names", "encoding: windows-1252\ndelimiter: ';'\n", []string{`unknown column "Artikelnummer" (nearest known: sku)`, `"Prijs" (nearest known: price)`, `"Omschrijving" (nearest known: name)`, "--detect"}, loader.ErrUnknownColumn},
			{"iso-8859-15", "encoding: iso-8859-15\ndelimiter: ';'\ndecimal: ','\nthousands: '.'\ncolumns: {artikelnummer: sku, omschrijving: name, prijs: price}\nignore: [lange omschrijving, kleur, gewicht (g), voorraad]\n",
				[]string{"which iso-8859-15 does not define", "looks windows-1252"}, loader.ErrEncoding},
		},
	},
	{
		name: "tab-separated UTF-16 with a byte-order mark",
		model: realisticModel([7]string{"Item No", "Title", "Description", "Unit Price", "Colour", "Weight g", "Currency"},
			func(c int64) string { return price(c, ".", ",") }, false),
		write: func(t testing.TB, header []string, rows []map[string]xval) []byte {
			return encode(t, utf16LE, delimited(textRows(header, withBad(header, rows, "Item No", "Unit Price")), '\t', '"', "\r\n"))
		},
		profile: `
format: csv # the export is named .txt
encoding: utf-16
delimiter: tab
thousands: ","
columns: {Item No: sku, Title: name, Unit Price: price}
attributes: {Colour: color, Weight g: weight_g}
`,
		badLine: 8, priceCol: "Unit Price", currency: true,
		wrong: []wrongProfile{
			{"no profile", "", []string{"UTF-16 byte-order mark", "encoding: utf-16"}, loader.ErrEncoding},
			{"comma delimiter", "encoding: utf-16\n", []string{`unknown column "Item No\tTitle`, "looks tab-separated", "delimiter: tab"}, loader.ErrUnknownColumn},
			{"no column names", "encoding: utf-16\ndelimiter: tab\n", []string{`unknown column "Item No" (nearest known: sku)`, `"Unit Price" (nearest known: price)`}, loader.ErrUnknownColumn},
		},
	},
	{
		name: "pipe-delimited ISO-8859-15 with €",
		model: realisticModel([7]string{"code", "naam", "omschrijving", "prijs", "kleur", "gewicht", ""},
			func(c int64) string { return price(c, ",", "") }, true),
		write: func(t testing.TB, header []string, rows []map[string]xval) []byte {
			return encode(t, iso885915, delimited(textRows(header, withBad(header, rows, "code", "prijs")), '|', '\'', "\n"))
		},
		profile: `
delimiter: "|"
quote: "'"
encoding: iso-8859-15
decimal: ","
columns: {code: sku, naam: name, omschrijving: description, prijs: price}
attributes: {kleur: color, gewicht: weight_g}
constants: {currency: EUR}
sku_trim: true
sku_prefix: CW-
`,
		badLine: 8, priceCol: "prijs",
		wrong: []wrongProfile{
			{"no profile", "", []string{"not valid UTF-8", "looks iso-8859-15", "--encoding iso-8859-15"}, loader.ErrEncoding},
			{"no column names", "encoding: iso-8859-15\ndelimiter: '|'\n", []string{`unknown column "code" (nearest known: sku)`, `"naam" (nearest known: name)`}, loader.ErrUnknownColumn},
		},
	},
	{
		name:  "XLSX with a header row and numbers stored as numbers",
		model: realisticModel([7]string{"SKU", "Product name", "Description", "Price", "Color", "Weight (g)", "Currency"}, nil, false),
		write: func(t testing.TB, header []string, rows []map[string]xval) []byte {
			// An empty row before the bad record: rejects give spreadsheet rows, not record counts.
			sheet := [][]xcell{toCells(header, nil)}
			for i, r := range withBad(header, rows, "SKU", "Price") {
				if i == badAt {
					sheet = append(sheet, nil)
				}
				sheet = append(sheet, toCells(header, r))
			}
			var b bytes.Buffer
			info := [][]xcell{{"Catalogue export"}, {"Supplier", "Voltline"}}
			if err := writeXLSX(&b, []string{"Info", "Products"}, map[string][][]xcell{"Info": info, "Products": sheet}); err != nil {
				t.Fatal(err)
			}
			return b.Bytes()
		},
		profile: `
format: xlsx
sheet: Products
columns: {Product name: name}
attributes: {Color: color, Weight (g): weight_g}
`,
		badLine: 8, priceCol: "Price", currency: true,
		wrong: []wrongProfile{
			{"read as CSV", "format: csv\n", []string{"a zip file (an XLSX workbook?)", "format: xlsx"}, nil},
			{"wrong sheet", "format: xlsx\nsheet: Artikelen\n", []string{`sheet "Artikelen" is not in the workbook`, `"Info", "Products"`}, nil},
			{"first sheet", "format: xlsx\n", []string{`row 1: header: unknown column "Catalogue export"`, "--detect"}, loader.ErrUnknownColumn},
			{"no column names", "format: xlsx\nsheet: products\n", []string{`unknown column "Product name" (nearest known: `, `"Color"`}, loader.ErrUnknownColumn},
		},
	},
}

func toCells(header []string, r map[string]xval) []xcell {
	out := make([]xcell, len(header))
	for i, h := range header {
		switch v, ok := r[h]; {
		case r == nil:
			out[i] = h
		case !ok || !v.isNum && v.text == "":
			out[i] = nil
		case v.isNum:
			out[i] = v.num
		default:
			out[i] = v.text
		}
	}
	return out
}

// shapeProducts are the products of the shape tests; one description holds a line break, so
// line numbers and record numbers differ.
func shapeProducts(n int) []realistic {
	ps := catalogue(n, 19)
	ps[2].Description += "\nSecond line: “quoted” — with a dash."
	ps[2].Description = strings.NewReplacer("“", `"`, "”", `"`, "—", "-").Replace(ps[2].Description) // ISO-8859-15 has no curly quotes
	return ps
}

// expectedCSV is tidemark's own CSV of the rows a drop holds, read with profile p: the same
// products, the sku as the profile makes it, the attributes it gathers.
func expectedCSV(t testing.TB, ps []realistic, header []string, rows []map[string]xval, s shape, p loader.Profile) string {
	t.Helper()
	var skuCol, nameCol, descCol string
	for h, c := range p.Columns {
		for _, hh := range header {
			if strings.EqualFold(strings.ReplaceAll(hh, " ", ""), strings.ReplaceAll(h, " ", "")) {
				switch c {
				case "sku":
					skuCol = hh
				case "name":
					nameCol = hh
				case "description":
					descCol = hh
				}
			}
		}
	}
	for _, h := range header {
		switch strings.ToLower(h) {
		case "sku":
			skuCol = h
		case "description":
			descCol = h
		}
	}
	currency := ""
	if s.currency || p.Constants["currency"] == "EUR" {
		currency = "EUR"
	}
	out := [][]string{{"sku", "name", "description", "price", "currency", "attributes"}}
	for i, r := range rows {
		sku := r[skuCol].text
		if p.SKUTrim {
			sku = strings.TrimSpace(sku)
		}
		sku = p.SKUPrefix + sku
		attrs := map[string]any{}
		for h, key := range p.Attributes {
			for _, hh := range header {
				if strings.EqualFold(strings.ReplaceAll(hh, " ", ""), strings.ReplaceAll(h, " ", "")) {
					switch v := r[hh]; {
					case v.isNum:
						attrs[key] = json.Number(strconv.FormatFloat(v.num, 'f', -1, 64))
					case v.text != "":
						attrs[key] = v.text
					}
				}
			}
		}
		a, err := json.Marshal(attrs)
		if err != nil {
			t.Fatal(err)
		}
		if r[nameCol].text != ps[i].Name || r[descCol].text != ps[i].Description {
			t.Fatalf("%s: the profile's name and description columns (%q, %q) do not hold the products'", s.name, nameCol, descCol)
		}
		out = append(out, []string{sku, ps[i].Name, ps[i].Description, price(ps[i].Cents, ".", ""), currency, string(a)})
	}
	return delimited(out, ',', '"', "\n")
}

func mustProfile(t testing.TB, y string) loader.Profile {
	t.Helper()
	p, err := loader.ParseProfile(strings.NewReader(y))
	if err != nil {
		t.Fatalf("profile %q: %v", y, err)
	}
	return p
}

// loadProfile loads a drop read with p into supplier and returns the result and the rejects.
func loadProfile(t *testing.T, pool *pgxpool.Pool, supplier int32, drop []byte, p loader.Profile) (loader.Result, []map[string]any, error) {
	t.Helper()
	if p.Format == "" {
		p.Format = loader.CSV
	}
	rd, err := loader.OpenProfile(bytes.NewReader(drop), p)
	if err != nil {
		return loader.Result{}, nil, err
	}
	if c, ok := rd.(io.Closer); ok {
		defer c.Close()
	}
	var rejects bytes.Buffer
	res, err := loader.Load(testenv.Context(t, 2*time.Minute), pool, rd, loader.Options{Supplier: supplier, MaxRejects: -1, Rejects: &rejects})
	return res, rejectLines(t, &rejects), err
}

// sameProducts fails unless suppliers a and b hold the same products, value for value.
func sameProducts(t *testing.T, pool *pgxpool.Pool, a, b int32) {
	t.Helper()
	pa, pb := products(t, pool, a), products(t, pool, b)
	if len(pa) != len(pb) || len(pa) == 0 {
		t.Fatalf("supplier %d has %d products, supplier %d %d", a, len(pa), b, len(pb))
	}
	skus := make([]string, 0, len(pa))
	for sku := range pa {
		skus = append(skus, sku)
	}
	sort.Strings(skus)
	for _, sku := range skus {
		x, y := pa[sku], pb[sku]
		x.UpdatedAt, y.UpdatedAt = time.Time{}, time.Time{}
		if x.SKU != y.SKU || x.Name != y.Name || x.Status != y.Status || x.Attributes != y.Attributes ||
			str(x.Description) != str(y.Description) || str(x.Price) != str(y.Price) || str(x.Currency) != str(y.Currency) {
			t.Fatalf("%s differs:\nsupplier %d: %s %q %q %s %s %s\nsupplier %d: %s %q %q %s %s %s", sku,
				a, x.SKU, x.Name, str(x.Description), str(x.Price), str(x.Currency), x.Attributes,
				b, y.SKU, y.Name, str(y.Description), str(y.Price), str(y.Currency), y.Attributes)
		}
	}
}

// TestShapes loads each real-world shape with its profile and checks it holds exactly the rows
// the same products give in tidemark's own CSV; that the bad record is rejected with its line
// and its source column names; and that reloading either one over the other writes nothing.
func TestShapes(t *testing.T) {
	const n = 150
	pool, _ := newDB(t)
	const slot = "shapes_test"
	if _, err := pool.Exec(context.Background(), "SELECT pg_create_logical_replication_slot($1, 'test_decoding')", slot); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", slot) })
	for i, s := range shapes {
		t.Run(s.name, func(t *testing.T) {
			fromShape, fromCSV := int32(100+2*i), int32(101+2*i)
			ps := shapeProducts(n)
			header, rows := s.model(ps)
			drop := s.write(t, header, rows)
			p := mustProfile(t, s.profile)
			res, rejects, err := loadProfile(t, pool, fromShape, drop, p)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if res.Inserted != n || res.Rejected != 1 {
				t.Fatalf("result %+v, rejects %v", res, rejects)
			}
			r := rejects[0]
			rec, _ := r["record"].(map[string]any)
			if r["line"] != float64(s.badLine) || !strings.HasPrefix(r["reason"].(string), `price: not a decimal number ("abc")`) || rec[s.priceCol] != "abc" {
				t.Fatalf("reject %v: want line %d, a price reason, and the record under the drop's column names (%q)", r, s.badLine, s.priceCol)
			}
			csvDrop := expectedCSV(t, ps, header, rows, s, p)
			mustLoad(t, pool, loader.CSV, csvDrop, loader.Options{Supplier: fromCSV, MaxRejects: -1})
			sameProducts(t, pool, fromShape, fromCSV)

			slotChanges(t, pool, slot) // the loads so far
			res, _ = mustLoad(t, pool, loader.CSV, csvDrop, loader.Options{Supplier: fromShape, MaxRejects: -1})
			if res.Unchanged != n || res.Inserted+res.Updated != 0 {
				t.Fatalf("tidemark's CSV over the %s drop: %+v", s.name, res)
			}
			res, _, err = loadProfile(t, pool, fromCSV, drop, p)
			if err != nil || res.Unchanged != n || res.Inserted+res.Updated != 0 {
				t.Fatalf("the drop over tidemark's CSV: %+v, %v", res, err)
			}
			if changes := slotChanges(t, pool, slot); len(changes) != 0 {
				t.Fatalf("identical reloads across encodings and separators wrote %d row changes, e.g. %s", len(changes), changes[0])
			}
		})
	}
}

// TestShapesWrongProfile reads each shape with profiles that do not fit it: each stops with
// the error that says what to set, and nothing is written.
func TestShapesWrongProfile(t *testing.T) {
	pool, _ := newDB(t)
	for _, s := range shapes {
		header, rows := s.model(shapeProducts(40))
		drop := s.write(t, header, rows)
		for _, w := range s.wrong {
			t.Run(s.name+"/"+w.name, func(t *testing.T) {
				p := mustProfile(t, w.profile)
				_, _, err := loadProfile(t, pool, 7, drop, p)
				if err == nil {
					t.Fatal("loaded with a wrong profile")
				}
				for _, want := range w.want {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q\nlacks %q", err, want)
					}
				}
				if w.is != nil && !errors.Is(err, w.is) {
					t.Errorf("error %v is not %v", err, w.is)
				}
			})
		}
	}
	if got := products(t, pool, 7); len(got) != 0 {
		t.Fatalf("wrong profiles wrote %d products", len(got))
	}
}

// TestShapesDecimalCommaWithoutProfile reads the Dutch prices without decimal: every record is
// rejected with a reason that says what to set, so --max-rejects stops the load.
func TestShapesDecimalCommaWithoutProfile(t *testing.T) {
	pool, _ := newDB(t)
	s := shapes[0]
	header, rows := s.model(shapeProducts(20))
	p := mustProfile(t, strings.Replace(s.profile, "decimal: \",\"\nthousands: \".\"\n", "", 1))
	p.Format = loader.CSV
	rd, err := loader.OpenProfile(bytes.NewReader(s.write(t, header, rows)), p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = loader.Load(testenv.Context(t, time.Minute), pool, rd, loader.Options{Supplier: 7, MaxRejects: 0})
	if !errors.Is(err, loader.ErrTooManyRejects) || !strings.Contains(err.Error(), `a decimal comma? set decimal: ","`) {
		t.Fatalf("got %v", err)
	}
}

// TestDetectProposesWorkingProfiles runs detection on each shape and loads the drop with the
// profile exactly as proposed: it must hold the products tidemark's CSV gives.
func TestDetectProposesWorkingProfiles(t *testing.T) {
	const n = 60
	pool, _ := newDB(t)
	for i, s := range shapes {
		t.Run(s.name, func(t *testing.T) {
			ps := shapeProducts(n)
			header, rows := s.model(ps)
			drop := s.write(t, header, rows)
			d, err := loader.Detect(bytes.NewReader(drop))
			if err != nil {
				t.Fatal(err)
			}
			proposal := d.YAML()
			t.Logf("proposed:\n%s", proposal)
			p := mustProfile(t, proposal)
			if strings.Contains(proposal, "does not read the drop") || strings.Contains(proposal, "reading stops") {
				t.Fatalf("the preview says the proposal fails:\n%s", proposal)
			}
			res, _, err := loadProfile(t, pool, int32(200+2*i), drop, p)
			if err != nil || res.Inserted != n || res.Rejected != 1 {
				t.Fatalf("load with the proposal: %+v, %v\n%s", res, err, proposal)
			}
			mustLoad(t, pool, loader.CSV, expectedCSV(t, ps, header, rows, s, p), loader.Options{Supplier: int32(201 + 2*i), MaxRejects: -1})
			sameProducts(t, pool, int32(200+2*i), int32(201+2*i))
		})
	}
}

// TestShapesFull: --full through a profile deletes the products a Dutch drop lacks, and a
// record rejected for its decimal-comma price still keeps its product (it named its sku).
func TestShapesFull(t *testing.T) {
	pool, _ := newDB(t)
	s := shapes[0]
	p := mustProfile(t, s.profile)
	p.Format = loader.CSV
	header, rows := s.model(shapeProducts(60))
	if _, _, err := loadProfile(t, pool, 7, s.write(t, header, rows), p); err != nil {
		t.Fatal(err)
	}
	rows = rows[:50]
	rows[0]["Prijs"] = txt("12.50") // a decimal point where the profile says comma: rejected
	rd, err := loader.OpenProfile(bytes.NewReader(s.write(t, header, rows)), p)
	if err != nil {
		t.Fatal(err)
	}
	res, err := loader.Load(testenv.Context(t, time.Minute), pool, rd, loader.Options{Supplier: 7, MaxRejects: -1, Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 10 || res.Rejected != 2 || res.Unchanged != 49 {
		t.Fatalf("full load %+v: want 10 deleted, 2 rejected (the bad record and the point price), 49 unchanged", res)
	}
	got := products(t, pool, 7)
	if len(got) != 50 || got["NW-000000"].SKU == "" || got["NW-000055"].SKU != "" {
		t.Fatalf("%d products after --full; NW-000000 (rejected, named) %+v", len(got), got["NW-000000"])
	}
}
