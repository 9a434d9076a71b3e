package loader_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/loader"
)

func TestParseProfileErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"delimeter: ';'\n", "field delimeter not found"},
		{"format: xls\n", `format "xls": want csv, ndjson or xlsx`},
		{"delimiter: ab\n", `delimiter "ab"`},
		{"delimiter: ';'\nquote: ';'\n", "the delimiter and the quote are both"},
		{"encoding: ebcdic\n", `encoding "ebcdic"`},
		{"decimal: ','\nthousands: ','\n", "decimal and thousands are both"},
		{"columns: {Artikel: sku, Code: sku}\n", "map to sku"},
		{"columns: {Artikel: skus}\n", `"skus" is not a tidemark column`},
		{"columns: {Artikel: sku}\nignore: [' artikel ']\n", "given twice"},
		{"attributes: {Kleur: color, Colour: color}\n", `gathered as "color"`},
		{"constants: {sku: A}\n", "a constant sku"},
		{"constants: {currency: EURO}\n", "currency: not 3 letters"},
		{"constants: {price: '12,50'}\n", "price: not a decimal number"},
		{"format: xlsx\ndelimiter: ';'\n", "the format is xlsx"},
		{"format: csv\nsheet: Blad1\n", "sheet \"Blad1\" is for xlsx drops"},
	} {
		_, err := loader.ParseProfile(strings.NewReader(tc.yaml))
		if !errors.Is(err, loader.ErrBadProfile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want ErrBadProfile with %q", tc.yaml, err, tc.want)
		}
	}
}

// TestPriceSeparators reads prices the profile's way: what the separators cannot read is a
// reason, never a guess.
func TestPriceSeparators(t *testing.T) {
	for _, tc := range []struct {
		profile, price, want, reason string
	}{
		{"decimal: ','", "12,50", "12.50", ""},
		{"decimal: ','", "-0,5", "", "negative"},
		{"decimal: ','", "12", "12", ""},
		{"decimal: ','", "12.50", "", `it has a ".", but the decimal separator is ","`},
		{"decimal: ','\nthousands: '.'", "1.234.567,8", "1234567.8", ""},
		{"decimal: ','\nthousands: '.'", "1.234", "1234", ""},
		{"decimal: ','\nthousands: '.'", "12.34,5", "", "not between groups of three digits"},
		{"decimal: ','\nthousands: '.'", "1234,5", "1234.5", ""},
		{"thousands: ','", "1,234.50", "1234.50", ""},
		{"thousands: ','", "1,23.50", "", "not between groups of three digits"},
		{"thousands: \"'\"", "1'234.5", "1234.5", ""},
		{"decimal: ','\nthousands: ' '", "1 234,5", "1234.5", ""},
		{"decimal: ','", "1,2,3", "", "not a decimal number"},
		{"decimal: ','", "€ 1,50", "", "not a decimal number"},
		{"", "12,50", "", `a decimal comma? set decimal: ","`},
	} {
		p := mustProfile(t, tc.profile)
		p.Format = loader.CSV
		rd, err := loader.OpenProfile(strings.NewReader(fmt.Sprintf("sku;name;price\nA;a;%s\n", tc.price)), p.Override(loader.Profile{Delimiter: ";"}))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		row, reason := loader.Validate(rec)
		switch {
		case tc.reason == "" && (reason != "" || str(row.Price) != tc.want):
			t.Errorf("%q with %q: price %s, reason %q; want %s", tc.price, tc.profile, str(row.Price), reason, tc.want)
		case tc.reason != "" && !strings.Contains(reason, tc.reason):
			t.Errorf("%q with %q: reason %q, want %q", tc.price, tc.profile, reason, tc.reason)
		}
	}
}

// TestNotUTF8MidDropStopsTheLoad: a Windows-1252 record far into a drop that sets no encoding
// stops the load when it is met, after COPY has already taken thousands of rows, and the
// transaction leaves nothing. The start of the drop was UTF-8, so only the record tells.
func TestNotUTF8MidDropStopsTheLoad(t *testing.T) {
	pool, _ := newDB(t)
	ps := catalogue(3000, 3)
	var b strings.Builder
	b.WriteString("sku,name,description\n")
	for _, p := range ps {
		fmt.Fprintf(&b, "%s,%s,\"%s\"\n", p.SKU, p.Name, strings.ReplaceAll(p.Description, `"`, `""`))
	}
	if b.Len() < 512<<10 {
		t.Fatalf("the drop is %d bytes: too small to pass the first check and reach COPY", b.Len())
	}
	b.WriteString("X-1,Caf\xe9 cr\xe8me,\n")
	rd, err := loader.Open(strings.NewReader(b.String()), loader.CSV)
	if err != nil {
		t.Fatalf("open: %v (the start of the drop is UTF-8)", err)
	}
	counted := &countingReader{Reader: rd}
	_, err = loader.Load(testenv.Context(t, time.Minute), pool, counted, loader.Options{Supplier: 7, MaxRejects: -1})
	want := fmt.Sprintf(`line %d: column "name" is not valid UTF-8 ("Caf\xe9 cr\xe8me")`, len(ps)+2)
	if !errors.Is(err, loader.ErrEncoding) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `looks windows-1252, where it reads "Café crème"`) {
		t.Fatalf("got %v\nwant ErrEncoding with %q", err, want)
	}
	if counted.n != len(ps) {
		t.Fatalf("the load read %d records before the bad one, want %d", counted.n, len(ps))
	}
	if got := products(t, pool, 7); len(got) != 0 {
		t.Fatalf("a stopped load left %d products", len(got))
	}
}

type countingReader struct {
	loader.Reader
	n int
}

func (c *countingReader) Next() (*loader.Record, error) {
	rec, err := c.Reader.Next()
	if err == nil {
		c.n++
	}
	return rec, err
}

// TestEncodingErrorsMidDrop: bytes the set encoding does not define, and an unpaired UTF-16
// surrogate, stop reading with the line they are on, after the records before them.
func TestEncodingErrorsMidDrop(t *testing.T) {
	utf16 := encode(t, utf16LE, "sku,name\nA,a\nB,")
	utf16 = append(utf16, 0x00, 0xd8, 'x', 0) // a high surrogate, then 'x'
	utf16 = append(utf16, encode(t, utf16LE, "\n")[2:]...)
	for _, tc := range []struct {
		name, enc string
		drop      []byte
		want      string
	}{
		{"iso-8859-15", "iso-8859-15", []byte("sku,name\nA,a\nB,\x80uro\n"), `line 3: the drop has the byte 0x80 ("B,\x80uro"), which iso-8859-15 does not define`},
		{"windows-1252", "windows-1252", []byte("sku,name\nA,a\nB,\x81\n"), "line 3: the drop has the byte 0x81"},
		{"utf-16", "utf-16", utf16, "line 3: an unpaired UTF-16 surrogate (0xD800)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := loader.OpenProfile(bytes.NewReader(tc.drop), loader.Profile{Format: loader.CSV, Encoding: tc.enc})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := rd.Next()
			if err != nil || rec.Fields[0] != "A" {
				t.Fatalf("first record: %v, %v", rec, err)
			}
			_, err = rd.Next()
			for err == nil {
				_, err = rd.Next()
			}
			if errors.Is(err, io.EOF) || !errors.Is(err, loader.ErrEncoding) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrEncoding with %q", err, tc.want)
			}
		})
	}
}
