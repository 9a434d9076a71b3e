package loader

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Detection is what Detect found in a drop: its shape, and a profile that reads it. The
// profile is a proposal to review, never applied on its own.
type Detection struct {
	Profile Profile
	// Header is the drop's column names, in order (for NDJSON, the keys of its first lines).
	Header []string
	// Notes explain each finding: how the encoding was told, which columns were recognised,
	// what to check.
	Notes []string
	// Preview is the first records read with Profile, or the error reading with it gave.
	Preview []string

	why map[string]string // header name → why it maps where it does
}

// detectRows is how many records detection looks at.
const detectRows = 200

// Detect looks at the start of a drop (an XLSX workbook whole) and proposes a profile for it:
// the format, encoding, delimiter, price separators and column mapping.
func Detect(r io.Reader) (*Detection, error) {
	br := bufio.NewReaderSize(r, sniffSize)
	if magic, _ := br.Peek(4); bytes.Equal(magic, []byte("PK\x03\x04")) {
		return detectXLSX(br)
	}
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open gzip: %w", err)
		}
		br = bufio.NewReaderSize(zr, sniffSize)
	}
	sample, err := br.Peek(sniffSize)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("read drop: %w", err)
	}
	if len(sample) == 0 {
		return nil, errors.New("empty input: nothing to detect")
	}
	d := &Detection{why: map[string]string{}}
	text, err := d.detectEncoding(sample)
	if err != nil {
		return nil, err
	}
	// The sample ends wherever the buffer did: keep whole lines only.
	if len(sample) == sniffSize {
		if i := strings.LastIndexByte(text, '\n'); i > 0 {
			text = text[:i+1]
		}
	}
	var rows [][]string
	if t := strings.TrimLeft(text, " \t\r\n\ufeff"); strings.HasPrefix(t, "{") {
		d.Profile.Format = NDJSON
		rows = d.detectNDJSON(t)
	} else {
		d.Profile.Format = CSV
		rows = d.detectCSV(text)
	}
	if len(d.Header) == 0 {
		return nil, errors.New("no header found in the drop")
	}
	d.mapColumns(rows, nil)
	d.preview(func(p Profile) (Reader, error) { return OpenProfile(bytes.NewReader(sample), p) })
	return d, nil
}

// detectEncoding names the sample's encoding in the profile and returns the sample as UTF-8.
func (d *Detection) detectEncoding(sample []byte) (string, error) {
	guess := guessCharset(sample)
	switch guess {
	case "utf-8":
		d.Notes = append(d.Notes, "encoding: UTF-8 (the default, so the profile does not name it)")
		return strings.TrimPrefix(string(sample), "\ufeff"), nil
	case "utf-16":
		d.Profile.Encoding = "utf-16"
		d.Notes = append(d.Notes, "encoding: UTF-16, by its byte-order mark")
		out, _, err := decodeUTF16(nil, sample[2:], sample[0] == 0xfe, false)
		if err != nil {
			return "", fmt.Errorf("decode the drop as utf-16: %w", err)
		}
		return string(out), nil
	}
	cs := charsets[guess]
	out, ok := cs.decodeString(string(sample))
	if !ok {
		// A byte Windows-1252 leaves undefined: ISO-8859-1 reads every byte.
		guess, cs = "iso-8859-1", charsets["iso-8859-1"]
		out, _ = cs.decodeString(string(sample))
	}
	d.Profile.Encoding = guess
	why := "not UTF-8; bytes 0x80-0x9F, which only Windows-1252 gives letters and punctuation (€ ‚ „ … ‘ ’ “ ” – —)"
	switch guess {
	case "iso-8859-15":
		why = "not UTF-8; the byte 0xA4, the euro sign € in ISO-8859-15 (¤ in ISO-8859-1), and no bytes 0x80-0x9F"
	case "windows-1252":
		if !hasC1(sample) {
			why = "not UTF-8; only bytes 0xA0-0xFF, which Windows-1252 and ISO-8859-1 read alike"
		}
	case "iso-8859-1":
		why = "not UTF-8, with bytes Windows-1252 does not define"
	}
	d.Notes = append(d.Notes, fmt.Sprintf("encoding: %s (%s): check the accented letters in the preview below", guess, why))
	return out, nil
}

func hasC1(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 && c <= 0x9f {
			return true
		}
	}
	return false
}

// detectCSV picks the delimiter and quote that split the sample into the most columns, the
// same number on every line, and returns its records after the header.
func (d *Detection) detectCSV(text string) [][]string {
	type result struct {
		delim rune
		quote byte
		rows  [][]string
	}
	var best result
	for _, quote := range []byte{'"', '\''} {
		sample := text
		if quote != '"' {
			sample = swapQuote(text, quote)
		}
		for _, delim := range []rune{',', ';', '\t', '|'} {
			cr := csv.NewReader(strings.NewReader(sample))
			cr.Comma = delim
			var rows [][]string
			consistent := true
			for len(rows) <= detectRows {
				rec, err := cr.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					consistent = false
					break
				}
				if quote != '"' {
					for i := range rec {
						rec[i] = swapQuote(rec[i], quote)
					}
				}
				rows = append(rows, append([]string(nil), rec...))
			}
			if consistent && len(rows) > 0 && (best.rows == nil || len(rows[0]) > len(best.rows[0])) {
				best = result{delim, quote, rows}
			}
		}
	}
	if best.rows == nil {
		return nil
	}
	d.Header = best.rows[0]
	if best.delim != ',' {
		d.Profile.Delimiter = string(best.delim)
		if best.delim == '\t' {
			d.Profile.Delimiter = "tab"
		}
	}
	note := fmt.Sprintf("delimiter: %s (%d columns on every line read)", delimName(best.delim), len(d.Header))
	if best.quote != '"' {
		d.Profile.Quote = string(best.quote)
		note += fmt.Sprintf(", quote %q", string(best.quote))
	}
	d.Notes = append(d.Notes, note)
	return best.rows[1:]
}

// detectNDJSON returns the keys of the sample's objects, in the order first met, as the
// header, and their string values as rows.
func (d *Detection) detectNDJSON(text string) [][]string {
	index := map[string]int{}
	var rows [][]string
	for _, line := range strings.Split(text, "\n") {
		if len(rows) >= detectRows {
			break
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(line), &obj) != nil {
			continue
		}
		// Keys in the line's own order, which a map loses.
		dec := json.NewDecoder(strings.NewReader(line))
		_, _ = dec.Token()
		row := make([]string, len(d.Header))
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				break
			}
			k, _ := t.(string)
			var v json.RawMessage
			if dec.Decode(&v) != nil {
				break
			}
			i, ok := index[k]
			if !ok {
				i = len(d.Header)
				index[k] = i
				d.Header = append(d.Header, k)
				row = append(row, "")
			}
			var s string
			if json.Unmarshal(v, &s) == nil {
				row[i] = s
			}
		}
		rows = append(rows, row)
	}
	d.Notes = append(d.Notes, fmt.Sprintf("format: NDJSON (%d keys in the first %d lines)", len(d.Header), len(rows)))
	return rows
}

func detectXLSX(r io.Reader) (*Detection, error) {
	spool := &xlsxReader{pl: &plan{}}
	defer spool.Close()
	ra, size, err := spool.randomAccess(r)
	if err != nil {
		return nil, err
	}
	sheets, err := (&xlsxReader{pl: &plan{}}).sheetNames(ra, size)
	if err != nil {
		return nil, err
	}
	// The first sheet whose header names a sku and a name, else the first.
	var first *Detection
	for _, name := range sheets {
		d, err := detectSheet(ra, size, name, sheets)
		if err != nil {
			if first == nil && name == sheets[0] {
				return nil, err
			}
			continue
		}
		if first == nil {
			first = d
		}
		if d.mapsRequired() {
			return d, nil
		}
	}
	if first == nil {
		return nil, errors.New("open xlsx: no sheet with a header row")
	}
	return first, nil
}

// sheetNames lists a workbook's sheets.
func (x *xlsxReader) sheetNames(ra io.ReaderAt, size int64) ([]string, error) {
	parts, err := workbookParts(ra, size)
	if err != nil {
		return nil, err
	}
	_, _, names, err := findSheet(parts, "")
	return names, err
}

func (d *Detection) mapsRequired() bool {
	var sku, name bool
	for _, h := range d.Header {
		c := columnIndex(normName(h))
		if m, ok := d.Profile.Columns[h]; ok {
			c = columnIndex(m)
		}
		sku, name = sku || c == colSKU, name || c == colName
	}
	return sku && name
}

func detectSheet(ra io.ReaderAt, size int64, sheet string, sheets []string) (*Detection, error) {
	x := &xlsxReader{pl: &plan{sheet: sheet}}
	defer x.Close()
	d := &Detection{why: map[string]string{}, Profile: Profile{Format: XLSX}}
	if _, err := x.open(ra, size); err != nil {
		return nil, err
	}
	d.Header = x.header
	if len(sheets) > 1 {
		d.Profile.Sheet = sheet
		d.Notes = append(d.Notes, fmt.Sprintf("sheet: %q, of %s", sheet, strings.Join(sheets, ", ")))
	}
	d.Notes = append(d.Notes, fmt.Sprintf("format: XLSX, header in row %d", x.row))
	var rows [][]string
	var numeric [][]bool
	for len(rows) < detectRows {
		ok, err := x.readRow()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		row, num := make([]string, len(x.cells)), make([]bool, len(x.cells))
		for i, c := range x.cells {
			row[i], num[i] = c.text, c.num
		}
		rows, numeric = append(rows, row), append(numeric, num)
	}
	d.mapColumns(rows, numeric)
	d.preview(func(p Profile) (Reader, error) {
		return OpenProfile(io.NewSectionReader(ra, 0, size), p)
	})
	return d, nil
}

// mapColumns maps the header to tidemark's columns: its own names first, then the names
// suppliers use, most likely meaning first; the rest become attributes. It also reads the
// price column's separators. numeric, for a spreadsheet, says which cells hold numbers.
func (d *Detection) mapColumns(rows [][]string, numeric [][]bool) {
	taken := map[int]bool{}
	assign := make([]int, len(d.Header))
	for i := range assign {
		assign[i] = -1
	}
	for i, h := range d.Header {
		if c := columnIndex(normName(h)); c >= 0 && !taken[c] {
			assign[i], taken[c] = c, true
			d.why[h] = "tidemark's own name"
		}
	}
	for rank := 0; rank < 2; rank++ {
		for i, h := range d.Header {
			cols := synonyms[normName(h)]
			if assign[i] >= 0 || rank >= len(cols) || taken[cols[rank]] {
				continue
			}
			assign[i], taken[cols[rank]] = cols[rank], true
			d.why[h] = "a name suppliers use for " + Columns[cols[rank]]
		}
	}
	keys := map[string]bool{}
	for i, h := range d.Header {
		switch c := assign[i]; {
		case c >= 0 && normName(h) == Columns[c]:
			// tidemark's own name needs no mapping
		case c >= 0:
			if d.Profile.Columns == nil {
				d.Profile.Columns = map[string]string{}
			}
			d.Profile.Columns[h] = Columns[c]
		case normName(h) == "":
			d.Profile.Ignore = append(d.Profile.Ignore, h)
		default:
			key := attributeKey(h, i)
			for keys[key] {
				key += "_"
			}
			keys[key] = true
			if d.Profile.Attributes == nil {
				d.Profile.Attributes = map[string]string{}
			}
			d.Profile.Attributes[h] = key
			d.why[h] = "not a tidemark column: gathered into attributes; rename the key, or move the column under ignore:"
		}
	}
	for _, need := range []int{colSKU, colName} {
		if !taken[need] {
			d.Notes = append(d.Notes, fmt.Sprintf("no column recognised as %s: map one under columns: before loading", Columns[need]))
		}
	}
	price := -1
	for i, c := range assign {
		if c == colPrice {
			price = i
		}
	}
	if price >= 0 {
		var values []string
		for r, row := range rows {
			if price < len(row) && (numeric == nil || price >= len(numeric[r]) || !numeric[r][price]) {
				values = append(values, strings.TrimSpace(row[price]))
			}
		}
		d.detectSeparators(values)
	}
	if !taken[colCurrency] && strings.Contains(strings.Join(flatten(rows), " "), "€") {
		d.Notes = append(d.Notes, "no currency column, and € appears in the drop: if its prices are in euros, add constants: {currency: EUR}")
	}
}

func flatten(rows [][]string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

var (
	commaDecimal = regexp.MustCompile(`^[+-]?\d{1,3}([. ']\d{3})*,\d{1,2}$|^[+-]?\d+,\d{1,2}$`)
	pointDecimal = regexp.MustCompile(`^[+-]?\d{1,3}([, ']\d{3})*\.\d{1,2}$|^[+-]?\d+\.\d{1,2}$`)
	groupSep     = regexp.MustCompile(`^[+-]?\d{1,3}(([. ',])\d{3})+([.,]\d+)?$`)
)

// detectSeparators reads the decimal and thousands separators off the price values written
// as text.
func (d *Detection) detectSeparators(values []string) {
	var comma, point int
	thousands := map[byte]int{}
	for _, v := range values {
		switch {
		case commaDecimal.MatchString(v):
			comma++
		case pointDecimal.MatchString(v):
			point++
		}
		if m := groupSep.FindStringSubmatch(v); m != nil && (m[3] == "" || m[3][0] != m[2][0]) {
			thousands[m[2][0]]++
		}
	}
	switch {
	case comma > 0 && point == 0:
		d.Profile.Decimal = ","
		delete(thousands, ',')
		d.Notes = append(d.Notes, fmt.Sprintf("prices: a decimal comma (%d of %d values, such as %q)", comma, len(values), first(values, commaDecimal)))
	case comma > 0 && point > 0:
		d.Notes = append(d.Notes, fmt.Sprintf("prices: %d values with a decimal comma and %d with a decimal point: check decimal: and thousands:", comma, point))
		return
	default:
		delete(thousands, '.')
	}
	for sep, n := range thousands {
		if n > 0 && len(thousands) == 1 {
			d.Profile.Thousands = string(sep)
			d.Notes = append(d.Notes, fmt.Sprintf("prices: thousands separated by %q", string(sep)))
		}
	}
}

func first(values []string, re *regexp.Regexp) string {
	for _, v := range values {
		if re.MatchString(v) {
			return v
		}
	}
	return ""
}

// attributeKey makes a JSON key of a column name: lower case, accents off, words joined by _.
func attributeKey(h string, i int) string {
	var b strings.Builder
	under := false
	for _, r := range norm.NFD.String(strings.ToLower(h)) {
		switch {
		case unicode.Is(unicode.Mn, r):
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			if under && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			under = false
		default:
			under = true
		}
	}
	if b.Len() == 0 {
		return fmt.Sprintf("column_%d", i+1)
	}
	return b.String()
}

// preview reads the first records with the proposed profile, to show how it reads the drop.
func (d *Detection) preview(open func(Profile) (Reader, error)) {
	rd, err := open(d.Profile)
	if err != nil {
		d.Preview = append(d.Preview, "the proposed profile does not read the drop: "+err.Error())
		return
	}
	if c, ok := rd.(io.Closer); ok {
		defer c.Close()
	}
	for len(d.Preview) < 3 {
		rec, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.Preview = append(d.Preview, "reading stops: "+err.Error())
			break
		}
		row, reason := Validate(rec)
		if reason != "" {
			d.Preview = append(d.Preview, fmt.Sprintf("line %d: rejected: %s", rec.Line, reason))
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "line %d: sku %s, name %s", row.Line, quoteShort(row.SKU), quoteShort(row.Name))
		if row.Price != nil {
			fmt.Fprintf(&b, ", price %s", *row.Price)
		}
		if row.Currency != nil {
			fmt.Fprintf(&b, " %s", *row.Currency)
		}
		if row.Attributes != "{}" {
			fmt.Fprintf(&b, ", attributes %s", truncate(row.Attributes, 80))
		}
		d.Preview = append(d.Preview, b.String())
	}
}

// YAML is the proposal as a profile file: the findings as comments, then the keys, columns in
// the drop's order.
func (d *Detection) YAML() string {
	var b strings.Builder
	b.WriteString("# Drop profile proposed by tidemark load --detect. Review it, then save it with\n")
	b.WriteString("#   tidemark supplier profile set ID FILE.yaml\n")
	for _, n := range d.Notes {
		fmt.Fprintf(&b, "# %s\n", n)
	}
	fmt.Fprintf(&b, "# header: %s\n", strings.Join(d.Header, " | "))
	if len(d.Preview) > 0 {
		b.WriteString("# read with this profile:\n")
		for _, p := range d.Preview {
			fmt.Fprintf(&b, "#   %s\n", p)
		}
	}
	p := d.Profile
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, yamlString(v))
		}
	}
	kv("format", string(p.Format))
	kv("sheet", p.Sheet)
	kv("delimiter", p.Delimiter)
	kv("quote", p.Quote)
	kv("encoding", p.Encoding)
	kv("decimal", p.Decimal)
	kv("thousands", p.Thousands)
	section := func(name string, m map[string]string) {
		if len(m) == 0 {
			return
		}
		fmt.Fprintf(&b, "%s:\n", name)
		for _, h := range d.Header {
			if v, ok := m[h]; ok {
				line := fmt.Sprintf("  %s: %s", yamlString(h), yamlString(v))
				if why := d.why[h]; why != "" {
					line = fmt.Sprintf("%-40s # %s", line, why)
				}
				b.WriteString(line + "\n")
			}
		}
	}
	section("columns", p.Columns)
	section("attributes", p.Attributes)
	if len(p.Ignore) > 0 {
		b.WriteString("ignore:\n")
		for _, h := range p.Ignore {
			fmt.Fprintf(&b, "  - %s\n", yamlString(h))
		}
	}
	return b.String()
}

var plainYAML = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.()/-]*( [A-Za-z0-9_.()/-]+)*$`)

// yamlString writes s as a YAML scalar: plain when that reads back as the same string, else
// double-quoted (JSON's quoting is valid YAML).
func yamlString(s string) string {
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "true", "false", "on", "off", "null":
	default:
		if plainYAML.MatchString(s) {
			return s
		}
	}
	q, _ := json.Marshal(s)
	return string(q)
}
