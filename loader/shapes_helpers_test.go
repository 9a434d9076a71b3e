package loader_test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
)

// realistic is one supplier product as a catalogue holds it: about 480 bytes of text, with
// punctuation and letters beyond ASCII that Windows-1252 and ISO-8859-15 both have.
type realistic struct {
	SKU, Name, Description, Color string
	Cents                         int64
	WeightG                       int
}

var (
	nameWords = []string{"Fjellro", "Café", "Crème", "Nordkap", "Jürgen's", "Ørsted", "Waterproof", "Hiking",
		"Jacket", "Kettle", "Espresso", "Grinder", "Lantern", "Thermos", "Bålstad", "Koffie", "Molen", "Señor",
		"Pan", "Tent", "Sleeping", "Bag", "Lamp", "Mok", "Rugzak", "Garçon", "Kookpot", "Naïve", "Classic", "Pro"}
	descWords = []string{"a", "sturdy", "light", "the", "with", "and", "for", "crème", "brûlée", "café", "naïve",
		"déjà", "vu", "façade", "über", "smörgåsbord", "piñata", "coöperatie", "hand-made", "stainless", "steel",
		"fits", "most", "stoves", "keeps", "drinks", "warm", "for", "hours", "weighs", "little", "packs", "small",
		"tested", "in", "Norway", "Curaçao", "Aruba", "and", "the", "Netherlands", "water", "resistant", "zip",
		"pockets", "two", "year", "warranty", "dishwasher", "safe", "BPA-free", "lid", "handle", "seams", "taped"}
	colors = []string{"rood", "blauw", "zwart", "groen", "crème", "grijs", "oranje", "wit"}
)

// catalogue makes n realistic products, the same for a seed.
func catalogue(n int, seed uint64) []realistic {
	rng := rand.New(rand.NewPCG(seed, 42))
	out := make([]realistic, n)
	for i := range out {
		nw := 3 + rng.IntN(3)
		name := make([]string, nw)
		for j := range name {
			name[j] = nameWords[rng.IntN(len(nameWords))]
		}
		dw := 40 + rng.IntN(21)
		var d strings.Builder
		for j := 0; j < dw; j++ {
			if j > 0 {
				d.WriteByte(' ')
			}
			w := descWords[rng.IntN(len(descWords))]
			switch rng.IntN(14) {
			case 0:
				w += ","
			case 1:
				w = `"` + w + `"`
			case 2:
				w += " &"
			case 3:
				w += ";"
			case 4:
				w = "€" + strconv.Itoa(5+rng.IntN(90))
			case 5:
				w += "."
			}
			d.WriteString(w)
		}
		d.WriteByte('.')
		out[i] = realistic{
			SKU:         fmt.Sprintf("NW-%06d", i),
			Name:        strings.Join(name, " "),
			Description: d.String(),
			Color:       colors[rng.IntN(len(colors))],
			Cents:       100 + rng.Int64N(250000),
			WeightG:     50 + rng.IntN(5000),
		}
	}
	return out
}

// price writes cents with a decimal separator and an optional thousands one.
func price(cents int64, decimal, thousands string) string {
	units := strconv.FormatInt(cents/100, 10)
	if thousands != "" {
		var b strings.Builder
		for i, c := range units {
			if i > 0 && (len(units)-i)%3 == 0 {
				b.WriteString(thousands)
			}
			b.WriteRune(c)
		}
		units = b.String()
	}
	return fmt.Sprintf("%s%s%02d", units, decimal, cents%100)
}

// delimited writes rows as a delimited text file: fields holding the delimiter, the quote, a
// line break or a leading space are quoted, the quote doubled inside.
func delimited(rows [][]string, delim, quote byte, eol string) string {
	var b strings.Builder
	for _, row := range rows {
		for i, f := range row {
			if i > 0 {
				b.WriteByte(delim)
			}
			if strings.ContainsAny(f, string([]byte{delim, quote, '\n', '\r'})) || strings.HasPrefix(f, " ") {
				q := string(quote)
				b.WriteString(q + strings.ReplaceAll(f, q, q+q) + q)
				continue
			}
			b.WriteString(f)
		}
		b.WriteString(eol)
	}
	return b.String()
}

func encode(t testing.TB, enc encoding.Encoding, s string) []byte {
	t.Helper()
	b, err := enc.NewEncoder().Bytes([]byte(s))
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

var (
	windows1252 = charmap.Windows1252
	iso885915   = charmap.ISO8859_15
	utf16LE     = unicode.UTF16(unicode.LittleEndian, unicode.UseBOM)
)

// xcell is a spreadsheet cell for writeXLSX: a string (a shared string), a float64 or int (a
// number) or nil (no cell).
type xcell = any

// writeXLSX writes a workbook the way Excel does: every text in the shared strings table,
// numbers as numbers, cells with references, one part per sheet. sheets are written in order.
func writeXLSX(w io.Writer, sheets []string, data map[string][][]xcell) error {
	z := zip.NewWriter(w)
	part := func(name, body string) error {
		f, err := z.Create(name)
		if err != nil {
			return err
		}
		_, err = io.WriteString(f, body)
		return err
	}
	const ns = `xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"`
	const rns = `xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"`
	var types, sheetList, rels strings.Builder
	for i, s := range sheets {
		fmt.Fprintf(&types, `<Override PartName="/xl/worksheets/sheet%d.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>`, i+1)
		fmt.Fprintf(&sheetList, `<sheet name="%s" sheetId="%d" r:id="rId%d"/>`, xmlEscape(s), i+1, i+1)
		fmt.Fprintf(&rels, `<Relationship Id="rId%d" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet%d.xml"/>`, i+1, i+1)
	}
	fmt.Fprintf(&rels, `<Relationship Id="rId%d" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>`, len(sheets)+1)
	steps := []struct{ name, body string }{
		{"[Content_Types].xml", `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>` + types.String() + `<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>`},
		{"_rels/.rels", `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>`},
		{"xl/workbook.xml", `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook ` + ns + ` ` + rns + `><sheets>` + sheetList.String() + `</sheets></workbook>`},
		{"xl/_rels/workbook.xml.rels", `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` + rels.String() + `</Relationships>`},
	}
	for _, s := range steps {
		if err := part(s.name, s.body); err != nil {
			return err
		}
	}
	// Excel numbers shared strings in the order it meets them; a string met again reuses its
	// index (kept only for short strings, so a big sheet does not need a big map here).
	index := map[string]int{}
	var sst bytes.Buffer
	n := 0
	for i, s := range sheets {
		f, err := z.Create(fmt.Sprintf("xl/worksheets/sheet%d.xml", i+1))
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(f, 64<<10)
		bw.WriteString(`<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet ` + ns + ` ` + rns + `><sheetData>`)
		for r, row := range data[s] {
			fmt.Fprintf(bw, `<row r="%d">`, r+1)
			for c, v := range row {
				ref := cellRef(c, r+1)
				switch v := v.(type) {
				case nil:
				case string:
					k, ok := index[v]
					if !ok {
						k = n
						n++
						if len(v) < 40 {
							index[v] = k
						}
						fmt.Fprintf(&sst, `<si><t xml:space="preserve">%s</t></si>`, xmlEscape(v))
					}
					fmt.Fprintf(bw, `<c r="%s" t="s"><v>%d</v></c>`, ref, k)
				case float64:
					fmt.Fprintf(bw, `<c r="%s" s="1"><v>%s</v></c>`, ref, strconv.FormatFloat(v, 'g', 17, 64))
				case int:
					fmt.Fprintf(bw, `<c r="%s"><v>%d</v></c>`, ref, v)
				default:
					return fmt.Errorf("cell type %T", v)
				}
			}
			bw.WriteString(`</row>`)
		}
		bw.WriteString(`</sheetData></worksheet>`)
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	f, err := z.Create("xl/sharedStrings.xml")
	if err != nil {
		return err
	}
	fmt.Fprintf(f, `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst %s count="%d" uniqueCount="%d">`, ns, n, n)
	if _, err := f.Write(sst.Bytes()); err != nil {
		return err
	}
	io.WriteString(f, `</sst>`)
	return z.Close()
}

func cellRef(col, row int) string {
	name := ""
	for c := col + 1; c > 0; c = (c - 1) / 26 {
		name = string(rune('A'+(c-1)%26)) + name
	}
	return name + strconv.Itoa(row)
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// replaceParts copies a zip, replacing the named parts' contents.
func replaceParts(w io.Writer, src []byte, parts map[string]string) error {
	zr, err := zip.NewReader(bytes.NewReader(src), int64(len(src)))
	if err != nil {
		return err
	}
	zw := zip.NewWriter(w)
	for _, f := range zr.File {
		out, err := zw.Create(f.Name)
		if err != nil {
			return err
		}
		if body, ok := parts[f.Name]; ok {
			if _, err := io.WriteString(out, body); err != nil {
				return err
			}
			continue
		}
		in, err := f.Open()
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			return err
		}
		in.Close()
	}
	return zw.Close()
}
