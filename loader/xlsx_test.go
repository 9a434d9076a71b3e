package loader_test

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/loader"
)

// TestXLSXMemoryIsFlat reads a large generated sheet, every text a shared string as Excel
// writes them, and samples the live heap as it goes: it must not grow with the rows read.
// (A reader that keeps the shared strings, or an index of them, in memory grows by tens of
// bytes per string: tens of megabytes over a sheet like this one.)
func TestXLSXMemoryIsFlat(t *testing.T) {
	const rows = 40000
	path := filepath.Join(t.TempDir(), "big.xlsx")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	header := []xcell{"SKU", "Product name", "Description", "Price", "Color", "Weight (g)"}
	sheet := make([][]xcell, 0, rows+1)
	sheet = append(sheet, header)
	for _, p := range catalogue(rows, 7) {
		sheet = append(sheet, []xcell{p.SKU, p.Name, p.Description, float64(p.Cents) / 100, p.Color, p.WeightG})
	}
	bw := bufio.NewWriter(f)
	if err := writeXLSX(bw, []string{"Products"}, map[string][][]xcell{"Products": sheet}); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	sheet = nil
	st, _ := os.Stat(path)

	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := mustProfile(t, "format: xlsx\ncolumns: {Product name: name}\nattributes: {Color: color, Weight (g): weight_g}\n")
	rd, err := loader.OpenProfile(in, p)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.(io.Closer).Close()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var first, peak uint64
	n := 0
	for rec := range records(t, rd) {
		if _, reason := loader.Validate(rec); reason != "" {
			t.Fatalf("row %d: %s", rec.Line, reason)
		}
		n++
		if n%5000 == 0 {
			h := heap()
			if first == 0 {
				first = h
			}
			peak = max(peak, h)
		}
	}
	if n != rows {
		t.Fatalf("read %d rows, want %d", n, rows)
	}
	t.Logf("%d rows, %.1f MiB workbook: live heap %.2f MiB after 5000 rows, at most %.2f MiB after", rows, float64(st.Size())/(1<<20), float64(first)/(1<<20), float64(peak)/(1<<20))
	if peak > first+1<<20 {
		t.Fatalf("live heap grew from %d to %d bytes while reading: memory grows with the sheet", first, peak)
	}
}

// TestXLSXCells reads the cell forms spreadsheets write: rich text and inline strings,
// formulas with their cached values, booleans, escapes, gaps in rows and columns.
func TestXLSXCells(t *testing.T) {
	sheet := `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>
<row r="2"><c r="B2" t="inlineStr"><is><t>sku</t></is></c><c r="C2" t="s"><v>0</v></c><c r="D2" t="s"><v>1</v></c><c r="E2" t="s"><v>2</v></c></row>
<row r="3"><c r="B3" t="s"><v>3</v></c><c r="C3" t="s"><v>4</v></c><c r="D3"><f>A1*2</f><v>12.300000000000001</v></c><c r="E3" t="b"><v>1</v></c></row>
<row r="5"><c r="B5" t="inlineStr"><is><r><t>K-</t></r><r><t>2</t></r></is></c><c r="C5" t="str"><v>Line one_x000D_
two</v></c><c r="D5"><v>7</v></c></row>
</sheetData></worksheet>`
	sst := `<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
<si><t>name</t></si><si><t>price</t></si><si><t>In stock</t></si>
<si><t>K-1</t></si><si><r><rPr><b/></rPr><t>Café</t></r><r><t xml:space="preserve"> crème</t></r><rPh><t>カフェ</t></rPh></si></sst>`
	var b bytes.Buffer
	if err := writeParts(&b, sheet, sst); err != nil {
		t.Fatal(err)
	}
	p := mustProfile(t, "format: xlsx\nattributes: {In stock: in_stock}\n")
	rd, err := loader.OpenProfile(bytes.NewReader(b.Bytes()), p)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.(io.Closer).Close()
	var got []string
	for rec := range records(t, rd) {
		row, reason := loader.Validate(rec)
		if reason != "" {
			t.Fatalf("row %d: %s", rec.Line, reason)
		}
		got = append(got, jsonLine(row.Line, "row", []string{row.SKU, row.Name, str(row.Price), row.Attributes}))
	}
	want := []string{
		`{"line":3,"row":["K-1","Café crème","12.3","{\"in_stock\": true}"]}`,
		`{"line":5,"row":["K-2","Line one\r\ntwo","7","{}"]}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// writeParts writes a one-sheet workbook around the given sheet and shared strings XML.
func writeParts(w io.Writer, sheet, sst string) error {
	var b bytes.Buffer
	if err := writeXLSX(&b, []string{"S"}, map[string][][]xcell{"S": nil}); err != nil {
		return err
	}
	return replaceParts(w, b.Bytes(), map[string]string{"xl/worksheets/sheet1.xml": sheet, "xl/sharedStrings.xml": sst})
}
