package loader_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidemark/tidemark/loader"
)

// readAll returns every record of a drop as (line, fields or reason) strings.
func readAll(t *testing.T, input []byte, format loader.Format) ([]string, error) {
	t.Helper()
	rd, err := loader.Open(bytes.NewReader(input), format)
	if err != nil {
		return nil, err
	}
	var out []string
	for {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if !json.Valid(rd.Raw()) {
			t.Fatalf("line %d: Raw() is not JSON: %s", rec.Line, rd.Raw())
		}
		if rec.Reason != "" {
			out = append(out, jsonLine(rec.Line, "reason", rec.Reason))
			continue
		}
		out = append(out, jsonLine(rec.Line, "fields", rec.Fields))
	}
}

func jsonLine(line int64, k string, v any) string {
	b, _ := json.Marshal(map[string]any{"line": line, k: v})
	return string(b)
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// wantTestdata reads testdata/file as it is and gzipped, and wants the records (or rejects) of
// readAll in both.
func wantTestdata(t *testing.T, file string, format loader.Format, want []string) {
	t.Helper()
	input, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string][]byte{"plain": input, "gzip": gz(t, input)} {
		t.Run(name, func(t *testing.T) {
			got, err := readAll(t, in, format)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestCSVQuotingAndLines(t *testing.T) {
	wantTestdata(t, "quoting.csv", loader.CSV, []string{
		`{"fields":["A1","Widget, large","He said \"hi\"\nand left","12.50","usd","","{\"c\":1}"],"line":2}`,
		`{"fields":["A2","Gadget","","0","","active",""],"line":4}`,
	})
}

func TestCSVBadRecordsAreRejectedAndReadingGoesOn(t *testing.T) {
	input := "name,sku\n" + // any column order
		"ok1,A\n" +
		"bare \"quote,B\n" +
		"too,many,fields\n" +
		"\"multi\nline\",C\n" +
		"\"unterminated,D\n"
	got, err := readAll(t, []byte(input), loader.CSV)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"fields":["A","ok1","","","","",""],"line":2}`,
		`{"line":3,"reason":"record: bare \" in non-quoted-field"}`,
		`{"line":4,"reason":"record: 3 fields, the header has 2"}`,
		`{"fields":["C","multi\nline","","","","",""],"line":5}`,
		`{"line":7,"reason":"record: extraneous or missing \" in quoted-field"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestCSVHeaderErrors(t *testing.T) {
	for _, tc := range []struct{ input, want string }{
		{"sku,name,colour\n", `unknown column "colour"`},
		{"sku,name,sku\n", `"sku" given twice`},
		{"sku,price\n", `required column "name" missing`},
		{"", "empty input"},
	} {
		_, err := loader.Open(strings.NewReader(tc.input), loader.CSV)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error containing %q", tc.input, err, tc.want)
		}
	}
	_, err := loader.Open(strings.NewReader("sku,name,colour\n"), loader.CSV)
	if !errors.Is(err, loader.ErrUnknownColumn) {
		t.Errorf("unknown column: %v is not ErrUnknownColumn", err)
	}
}

func TestNDJSON(t *testing.T) {
	wantTestdata(t, "mixed.ndjson", loader.NDJSON, []string{
		`{"fields":["N1","One","","1.50","","","{\"a\":[1,2]}"],"line":1}`,
		`{"fields":["N2","Two","","2","eur","",""],"line":2}`,
		`{"fields":["N3","Three","","","","",""],"line":4}`,
		`{"line":5,"reason":"record: not a JSON object: invalid character 'o' in literal null (expecting 'u')"}`,
		`{"line":6,"reason":"sku: not a string (4)"}`,
		`{"line":7,"reason":"attributes: not a JSON object (a string)"}`,
	})
	_, err := readAll(t, []byte(`{"sku":"a","name":"b"}`+"\n"+`{"sku":"a","name":"b","colour":"red"}`), loader.NDJSON)
	if !errors.Is(err, loader.ErrUnknownColumn) || !strings.Contains(err.Error(), `line 2: unknown column "colour"`) {
		t.Fatalf("unknown key: got %v", err)
	}
}

func TestFormatOf(t *testing.T) {
	for name, want := range map[string]loader.Format{
		"a.csv": loader.CSV, "a.CSV.gz": loader.CSV, "a.ndjson": loader.NDJSON, "a.jsonl.gz": loader.NDJSON, "a.json": "", "a.gz": "",
	} {
		if got, _ := loader.FormatOf(name); got != want {
			t.Errorf("FormatOf(%q) = %q, want %q", name, got, want)
		}
	}
}

// fuzzRead reads a whole drop: readers must never panic, and every record they return must
// either validate or carry a reason.
func fuzzRead(t *testing.T, input []byte, format loader.Format) {
	rd, err := loader.Open(bytes.NewReader(input), format)
	if err != nil {
		return
	}
	fuzzRecords(t, rd, -1, func(loader.Row) {})
}

// fuzzRecords reads up to limit records of rd (all of them when limit < 0), or until an
// error: each must have a line and its JSON, and a row that validates must have a SKU, a name
// and JSON attributes; check looks further at those rows.
func fuzzRecords(t *testing.T, rd loader.Reader, limit int, check func(loader.Row)) {
	for n := 0; limit < 0 || n < limit; n++ {
		rec, err := rd.Next()
		if err != nil {
			return
		}
		if rec.Line < 1 {
			t.Fatalf("record with line %d", rec.Line)
		}
		if !json.Valid(rd.Raw()) {
			t.Fatalf("Raw() is not JSON: %q", rd.Raw())
		}
		row, reason := loader.Validate(rec)
		if reason != "" {
			continue
		}
		if row.SKU == "" || row.Name == "" || !json.Valid([]byte(row.Attributes)) {
			t.Fatalf("invalid row passed validation: %+v", row)
		}
		check(row)
	}
}

func addSeeds(f *testing.F, glob string) {
	files, _ := filepath.Glob(filepath.Join("testdata", glob))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzCSV(f *testing.F) {
	addSeeds(f, "*.csv")
	f.Add([]byte("sku,name\n\"a\nb\",\"c\"\"d\"\n"))
	f.Fuzz(func(t *testing.T, input []byte) { fuzzRead(t, input, loader.CSV) })
}

func FuzzNDJSON(f *testing.F) {
	addSeeds(f, "*.ndjson")
	f.Add([]byte(`{"sku":"a","name":"b","attributes":{"x":"\ud800"}}`))
	f.Fuzz(func(t *testing.T, input []byte) { fuzzRead(t, input, loader.NDJSON) })
}

// fuzzProfiles are the profiles FuzzProfileReader reads its input with: the shapes' and a few
// that exercise the other paths.
var fuzzProfiles = func() []loader.Profile {
	var out []loader.Profile
	for _, s := range shapes {
		p, err := loader.ParseProfile(strings.NewReader(s.profile))
		if err != nil {
			panic(err)
		}
		if p.Format == "" {
			p.Format = loader.CSV
		}
		out = append(out, p)
	}
	return append(out,
		loader.Profile{Format: loader.CSV, Encoding: "utf-8", Quote: "'", Thousands: ",", Columns: map[string]string{"id": "sku"}},
		loader.Profile{Format: loader.NDJSON, Encoding: "windows-1252", Decimal: ",", Attributes: map[string]string{"kleur": "color"}, Constants: map[string]string{"status": "active"}},
		loader.Profile{Format: loader.NDJSON, Encoding: "utf-16", Attributes: map[string]string{"x": "x"}},
	)
}()

// FuzzProfileReader reads arbitrary input with each profile: no panic, every record validates
// or carries a reason, Raw is JSON, and a valid row's text is UTF-8 and its attributes a JSON
// object.
func FuzzProfileReader(f *testing.F) {
	for i, s := range shapes {
		header, rows := s.model(shapeProducts(badAt + 2))
		f.Add(uint8(i), s.write(f, header, rows))
	}
	f.Add(uint8(4), []byte("id,name,price\n'a,b',\"x\",\"1,234.5\"\n"))
	f.Add(uint8(5), []byte("{\"sku\":\"A\",\"name\":\"Caf\xe9\",\"price\":\"1,5\",\"kleur\":\"r\x80d\"}\n"))
	f.Add(uint8(6), append([]byte{0xff, 0xfe}, []byte("{\x00\"\x00s\x00k\x00u\x00\"\x00:\x00\"\x00a\x00\"\x00}\x00\n\x00")...))
	f.Fuzz(func(t *testing.T, which uint8, input []byte) {
		p := fuzzProfiles[int(which)%len(fuzzProfiles)]
		rd, err := loader.OpenProfile(bytes.NewReader(input), p)
		if err != nil {
			return
		}
		if c, ok := rd.(io.Closer); ok {
			defer c.Close()
		}
		fuzzRecords(t, rd, 10000, func(row loader.Row) {
			if !strings.HasPrefix(row.Attributes, "{") {
				t.Fatalf("invalid row passed validation: %+v", row)
			}
			for _, s := range []string{row.SKU, row.Name, row.Status, row.Attributes} {
				if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
					t.Fatalf("row text %q is not UTF-8 without NUL", s)
				}
			}
		})
	})
}

// TestRecords: every record to the end; a read error once, ending the range; a break honoured.
func TestRecords(t *testing.T) {
	open := func() loader.Reader {
		rd, err := loader.Open(strings.NewReader("sku,name\nA,a\nB,b\nC,c\n"), loader.CSV)
		if err != nil {
			t.Fatal(err)
		}
		return rd
	}
	var skus []string
	for rec, err := range loader.Records(open()) {
		if err != nil {
			t.Fatal(err)
		}
		skus = append(skus, rec.Fields[0])
	}
	if strings.Join(skus, ",") != "A,B,C" {
		t.Fatalf("read %v, want A,B,C", skus)
	}
	var got []string
	for rec, err := range loader.Records(&failingReader{Reader: open(), n: 2}) {
		if err != nil {
			got = append(got, "error: "+err.Error())
			continue // the range must end by itself
		}
		got = append(got, rec.Fields[0])
	}
	if strings.Join(got, ",") != "A,B,error: disk on fire" {
		t.Fatalf("read %q, want A, B and the error once", got)
	}
	// A range that yields after the body broke out panics (Go checks it): that is what fails.
	n := 0
	for range loader.Records(open()) {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("the range went on after a break: %d", n)
	}
}
