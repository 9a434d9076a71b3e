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
	"iter"
	"strings"
	"unicode/utf8"
)

// Format is the syntax of a drop.
type Format string

// The drop formats.
const (
	CSV    Format = "csv"
	NDJSON Format = "ndjson"
	XLSX   Format = "xlsx"
)

// Column indexes into Record.Fields.
const (
	colSKU = iota
	colName
	colDescription
	colPrice
	colCurrency
	colStatus
	colAttributes
	numColumns
)

// Columns are the column names a drop may carry, in Record.Fields order.
var Columns = [numColumns]string{"sku", "name", "description", "price", "currency", "status", "attributes"}

// Record is one record of a drop, before validation.
type Record struct {
	// Line is the 1-based physical line where the record starts (the CSV header is line 1).
	Line int64
	// Fields holds the raw text of each column: empty when absent, empty or JSON null.
	Fields [numColumns]string
	// Reason is set when the record could not be parsed at all (bad quoting, invalid JSON,
	// a value of the wrong JSON type; Fields are then incomplete) or not read the profile's
	// way (a price with other separators).
	Reason string

	valid8     bool // every field is known to be UTF-8
	attrsExact bool // Fields[colAttributes] is exactly how jsonb prints it
}

// Reader reads the records of a drop one at a time.
type Reader interface {
	// Next returns the next record, io.EOF after the last, or an error that ends the load
	// (an I/O error, an unknown column). The record is only valid until the next call.
	Next() (*Record, error)
	// Raw returns the record last returned as JSON, for the rejects file.
	Raw() json.RawMessage
}

// Records ranges over rd's records to the end of the drop. A read error other than io.EOF
// is yielded once, with a nil record, and ends the range.
func Records(rd Reader) iter.Seq2[*Record, error] {
	return func(yield func(*Record, error) bool) {
		for {
			rec, err := rd.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if !yield(rec, err) || err != nil {
				return
			}
		}
	}
}

// Open wraps r (the drop's bytes, maybe gzipped: recognised by its magic bytes) in a reader of
// tidemark's own drop of the given format: UTF-8, comma-separated, tidemark's column names. For
// CSV it reads the header, so an unknown or missing column is reported before anything is
// loaded.
func Open(r io.Reader, format Format) (Reader, error) {
	return OpenProfile(r, Profile{Format: format})
}

// sniffSize is how much of a drop is looked at before reading it: its encoding is checked and
// guessed on that much.
const sniffSize = 256 << 10

// OpenProfile wraps r in a reader of the drop p describes; p.Format must be set. An XLSX drop
// is read with random access: r should be an *os.File, else it is first copied to a temporary
// file. A reader that holds files is an [io.Closer]; close it when done.
func OpenProfile(r io.Reader, p Profile) (Reader, error) {
	pl, err := p.compile()
	if err != nil {
		return nil, err
	}
	if pl.format == XLSX {
		return openXLSX(r, pl)
	}
	br := bufio.NewReaderSize(r, sniffSize)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open gzip: %w", err)
		}
		br = bufio.NewReaderSize(zr, sniffSize)
	}
	if magic, _ := br.Peek(4); bytes.Equal(magic, []byte("PK\x03\x04")) {
		return nil, fmt.Errorf("the drop is a zip file (an XLSX workbook?) but the format is %s: set format: xlsx in the profile or give --format xlsx", pl.format)
	}
	if br, err = decodeStream(br, pl); err != nil {
		return nil, err
	}
	switch pl.format {
	case CSV:
		return newCSVReader(br, pl)
	case NDJSON:
		return newNDJSONReader(br, pl), nil
	default:
		return nil, fmt.Errorf("unknown format %q (want csv, ndjson or xlsx)", pl.format)
	}
}

// decodeStream handles the byte-order mark and the encodings read as a stream: it checks the
// start of a drop whose encoding is not set for UTF-8, so a drop in another encoding stops
// before anything is read.
func decodeStream(br *bufio.Reader, pl *plan) (*bufio.Reader, error) {
	head, _ := br.Peek(4)
	utf16BOM := bytes.HasPrefix(head, []byte{0xff, 0xfe}) || bytes.HasPrefix(head, []byte{0xfe, 0xff})
	utf8BOM := bytes.HasPrefix(head, []byte("\xef\xbb\xbf"))
	name := "utf-8"
	if pl.enc != nil {
		name = pl.enc.name
	}
	switch {
	case name == "utf-16" && !utf16BOM:
		return nil, fmt.Errorf("encoding utf-16 needs a byte-order mark, and the drop starts with %s: %w; the drop looks %s",
			quoteBytes(string(head)), ErrEncoding, guessCharset(peek(br)))
	case name == "utf-16":
		return bufio.NewReaderSize(newUTF16Decoder(br), sniffSize), nil
	case utf16BOM:
		return nil, fmt.Errorf("the drop starts with a UTF-16 byte-order mark but is read as %s: %w; set encoding: utf-16 in the profile or give --encoding utf-16", name, ErrEncoding)
	case utf8BOM && name != "utf-8":
		return nil, fmt.Errorf("the drop starts with a UTF-8 byte-order mark but is read as %s: %w; set encoding: utf-8 (or leave it unset)", name, ErrEncoding)
	case utf8BOM:
		// Tolerated: spreadsheets write one.
		_, _ = br.Discard(3)
	}
	if pl.enc != nil && pl.enc.table != nil {
		return bufio.NewReaderSize(newByteDecoder(br, pl.enc), sniffSize), nil
	}
	if pl.enc == nil {
		if b := peek(br); !validUTF8Prefix(b) {
			bad := invalidAt(b)
			line := int64(1 + bytes.Count(b[:bad], []byte("\n")))
			from := max(0, bytes.LastIndexByte(b[:bad], '\n')+1)
			to := bad + 1
			if i := bytes.IndexByte(b[bad:], '\n'); i > 0 {
				to = bad + i
			}
			return nil, notUTF8(line, "the drop", strings.TrimRight(string(b[from:to]), "\r"), b)
		}
	}
	return br, nil
}

// peek returns as much of the drop's start as the buffer holds.
func peek(br *bufio.Reader) []byte {
	b, _ := br.Peek(sniffSize)
	return b
}

// invalidAt returns the offset of the first byte of b that is not UTF-8.
func invalidAt(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// FormatOf guesses the format from a file name: .csv, .ndjson or .jsonl, each optionally .gz.
// (An XLSX drop is named by its profile or --format; see the command.)
func FormatOf(name string) (Format, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".gz")
	switch {
	case strings.HasSuffix(name, ".csv"):
		return CSV, true
	case strings.HasSuffix(name, ".ndjson"), strings.HasSuffix(name, ".jsonl"):
		return NDJSON, true
	}
	return "", false
}

func columnIndex(name string) int {
	for i, c := range Columns {
		if c == name {
			return i
		}
	}
	return -1
}

type csvReader struct {
	r       *csv.Reader
	pl      *plan
	header  []string
	targets []target // CSV field position → where it goes
	fields  []string // the record's fields, decoded: what Raw shows
	decoded []string
	attrs   []attrValue
	buf     []byte
	rec     Record
	// convert: a custom quote character, swapped with '"' as the drop streams and back in
	// each field.
	convert bool
	swapper quoteSwapper
	// strict: no encoding is set, and a field that is not UTF-8 stops the load.
	strict bool
}

func newCSVReader(r io.Reader, pl *plan) (*csvReader, error) {
	c := &csvReader{pl: pl, strict: pl.enc == nil, convert: pl.quote != '"', swapper: quoteSwapper{r: r, q: pl.quote}}
	if c.convert {
		r = &c.swapper
	}
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.Comma = pl.delim
	c.r = cr
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty input: want a header row (sku,name,…)")
	}
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	c.header = append([]string(nil), c.convertFields(header)...)
	if c.strict {
		for _, h := range c.header {
			if !utf8.ValidString(h) {
				return nil, notUTF8(1, "the header", h, []byte(h))
			}
		}
	}
	if c.targets, err = pl.resolveHeader(c.header); err != nil {
		return nil, err
	}
	return c, nil
}

// convertFields swaps a custom quote character back; without one it returns fields as they
// are. The fields that need it are rewritten into one string, one allocation per record.
func (c *csvReader) convertFields(fields []string) []string {
	if !c.convert {
		return fields
	}
	q := c.pl.quote
	need := false
	for _, f := range fields {
		if strings.IndexByte(f, q) >= 0 || strings.IndexByte(f, '"') >= 0 {
			need = true
			break
		}
	}
	if !need {
		return fields
	}
	c.buf = c.buf[:0]
	for _, f := range fields {
		c.buf = append(c.buf, f...)
	}
	c.swapper.swap(c.buf)
	all := string(c.buf)
	c.decoded = c.decoded[:0]
	for _, f := range fields {
		c.decoded = append(c.decoded, all[:len(f)])
		all = all[len(f):]
	}
	return c.decoded
}

func (c *csvReader) Next() (*Record, error) {
	c.rec = Record{}
	fields, err := c.r.Read()
	var perr *csv.ParseError
	switch {
	case err == nil:
		c.rec.Line = int64(c.startLine())
		return &c.rec, c.place(fields)
	case errors.As(err, &perr) && errors.Is(perr.Err, csv.ErrFieldCount):
		c.rec.Line = int64(perr.StartLine)
		// The fields the header names are still known: a --full load keeps the product of a
		// record rejected for its field count.
		if err := c.place(fields); err != nil {
			return nil, err
		}
		c.rec.Reason = fmt.Sprintf("record: %d fields, the header has %d", len(fields), len(c.header))
		return &c.rec, nil
	case errors.As(err, &perr):
		// encoding/csv resumes at the next line after a quoting error, so the rest of the
		// file still loads; the bad record goes to the rejects.
		c.fields = nil
		c.rec.Line = int64(perr.StartLine)
		c.rec.Reason = "record: " + perr.Err.Error()
		return &c.rec, nil
	default:
		return nil, err
	}
}

// place puts the record's fields where the header says, then applies the profile.
func (c *csvReader) place(fields []string) error {
	fields = c.convertFields(fields)
	c.fields = fields
	rec := &c.rec
	if c.strict {
		for i, f := range fields {
			if !utf8.ValidString(f) {
				what := "a field beyond the header"
				if i < len(c.header) {
					what = fmt.Sprintf("column %q", c.header[i])
				}
				return notUTF8(rec.Line, what, f, []byte(f))
			}
		}
	}
	// Checked, or decoded from another encoding: every field is UTF-8. Only an encoding set
	// to utf-8 leaves it to Validate, which rejects the record.
	rec.valid8 = c.strict || c.pl.enc != nil && c.pl.enc.name != "utf-8"
	if c.pl.plain {
		for i, f := range fields[:min(len(fields), len(c.targets))] {
			if t := c.targets[i]; t.col >= 0 {
				rec.Fields[t.col] = f
			} else if t.col == toBlank && f != "" && rec.Reason == "" {
				rec.Reason = blankReason(i)
			}
		}
		return nil
	}
	c.attrs = c.attrs[:0]
	for i, f := range fields[:min(len(fields), len(c.targets))] {
		switch t := c.targets[i]; {
		case t.col >= 0:
			rec.Fields[t.col] = f
		case t.col == toAttribute:
			c.attrs = append(c.attrs, attrValue{key: t.attr, val: f})
		case t.col == toBlank && f != "" && rec.Reason == "":
			rec.Reason = blankReason(i)
		}
	}
	c.buf = c.pl.finish(rec, c.attrs, false, c.buf)
	return nil
}

func (c *csvReader) startLine() int {
	line, _ := c.r.FieldPos(0)
	return line
}

// Raw is the record as an object of header name → field (extra fields under "_extra").
func (c *csvReader) Raw() json.RawMessage { return rawObject(c.header, c.fields) }

func writeJSONString(b *bytes.Buffer, s string) {
	e, _ := json.Marshal(s) // invalid UTF-8 becomes U+FFFD: the rejects file stays valid JSON
	b.Write(e)
}

// quoteSwapper exchanges a custom quote character with '"' as the drop streams, so
// encoding/csv, whose quote is '"', reads the custom one as its quote; convertFields exchanges them
// back in each field. Both are ASCII, so this is safe in every encoding read byte-wise.
type quoteSwapper struct {
	r  io.Reader
	q  byte
	at []int
}

func (s *quoteSwapper) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.swap(p[:n])
	return n, err
}

// swap exchanges the two quote characters in b. They are rare: it jumps from one to the next,
// noting the custom quote's places first, then turning every '"' into it, then those places
// into '"'.
func (s *quoteSwapper) swap(b []byte) {
	s.at = s.at[:0]
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], s.q)
		if j < 0 {
			break
		}
		s.at = append(s.at, i+j)
		i += j + 1
	}
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			break
		}
		b[i+j] = s.q
		i += j + 1
	}
	for _, i := range s.at {
		b[i] = '"'
	}
}

func swapQuote(f string, q byte) string {
	if strings.IndexByte(f, q) < 0 && strings.IndexByte(f, '"') < 0 {
		return f
	}
	b := []byte(f)
	for i, c := range b {
		switch c {
		case q:
			b[i] = '"'
		case '"':
			b[i] = q
		}
	}
	return string(b)
}

// maxLine bounds one NDJSON line, so a file without newlines cannot take all memory.
const maxLine = 64 << 20

type ndjsonReader struct {
	s       *bufio.Scanner
	pl      *plan
	targets map[string]target // key → where it goes, as met
	line    int64
	raw     []byte
	rec     Record
	attrs   []attrValue
	buf     []byte
}

func newNDJSONReader(r io.Reader, pl *plan) *ndjsonReader {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64<<10), maxLine)
	return &ndjsonReader{s: s, pl: pl, targets: map[string]target{}}
}

func (n *ndjsonReader) Next() (*Record, error) {
	for n.s.Scan() {
		n.line++
		line := bytes.TrimSpace(n.s.Bytes())
		if len(line) == 0 {
			continue
		}
		// JSON would turn bytes that are not UTF-8 into U+FFFD without a word: stop when no
		// encoding is set and the line is not UTF-8 (other encodings are decoded as they stream).
		valid := utf8.Valid(line)
		if n.pl.enc == nil && !valid {
			return nil, notUTF8(n.line, "the line", string(line), line)
		}
		n.raw = line
		n.rec = Record{Line: n.line, valid8: true}
		if !valid { // encoding: utf-8 set: this record alone is rejected
			n.rec.Reason = "record: not valid UTF-8"
			return &n.rec, nil
		}
		if err := n.parse(line); err != nil {
			return nil, err
		}
		return &n.rec, nil
	}
	if err := n.s.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d MiB", n.line+1, maxLine>>20)
		}
		return nil, err
	}
	return nil, io.EOF
}

// target returns where key goes, or the error for a key neither the profile nor tidemark knows.
func (n *ndjsonReader) target(key string) (target, error) {
	if t, ok := n.targets[key]; ok {
		return t, nil
	}
	t, ok := n.pl.sources[normName(key)]
	if !ok {
		return t, fmt.Errorf("line %d: %w %q (nearest known: %s); map it under columns:, attributes: or ignore: in the supplier's profile, or run tidemark load --detect FILE for a proposal",
			n.line, ErrUnknownColumn, key, n.pl.nearest(key))
	}
	n.targets[key] = t
	return t, nil
}

func (n *ndjsonReader) parse(line []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil || obj == nil {
		n.rec.Reason = "record: not a JSON object"
		if err != nil {
			n.rec.Reason += ": " + err.Error()
		}
		return nil
	}
	var values [numColumns]json.RawMessage
	var keys [numColumns]string
	n.attrs = n.attrs[:0]
	for k, v := range obj {
		t, err := n.target(k)
		if err != nil {
			return err
		}
		switch {
		case t.col >= 0:
			values[t.col], keys[t.col] = v, k
		case t.col == toAttribute:
			kind, s, err := fieldValue(v)
			if err != nil {
				n.rec.Reason = k + ": " + err.Error()
			}
			if kind != jsonNull {
				n.attrs = append(n.attrs, attrValue{key: t.attr, val: s, json: kind == jsonOther})
			}
		}
	}
	// Every field is read even after a bad one, in column order: the first problem is the
	// reason, and the sku of a rejected record is still known (a --full load keeps its product).
	fail := func(reason string) {
		if n.rec.Reason == "" {
			n.rec.Reason = reason
		}
	}
	priceNum := false
	for i, col := range Columns {
		v := values[i]
		if v == nil {
			continue
		}
		if keys[i] != col {
			col = keys[i] // reasons name the drop's own key
		}
		kind, s, err := fieldValue(v)
		switch {
		case err != nil:
			fail(col + ": " + err.Error())
		case kind == jsonNull:
		case kind == jsonString && i == colAttributes:
			fail(col + ": not a JSON object (a string)")
		case kind == jsonString:
			n.rec.Fields[i] = s
		case i == colPrice && (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')):
			n.rec.Fields[i], priceNum = s, true
		case i == colAttributes && s[0] == '{':
			n.rec.Fields[i] = s
		case i == colAttributes:
			fail(col + ": not a JSON object")
		default:
			fail(fmt.Sprintf("%s: not a string (%s)", col, truncate(s, 40)))
		}
	}
	if !n.pl.plain {
		n.buf = n.pl.finish(&n.rec, n.attrs, priceNum, n.buf)
	}
	return nil
}

// jsonKind is what a field of an NDJSON record holds.
type jsonKind int8

const (
	jsonNull   jsonKind = iota
	jsonString          // decoded
	jsonOther           // a number, object, array or boolean, as its JSON text
)

// fieldValue reads one field of a record that encoding/json has already decoded as valid:
// null, a string (decoded; the error is there for the form's sake, as a valid string always
// decodes), or any other value as its text, trimmed.
func fieldValue(v json.RawMessage) (jsonKind, string, error) {
	v = bytes.TrimSpace(v)
	switch {
	case string(v) == "null":
		return jsonNull, "", nil
	case v[0] == '"':
		var s string
		err := json.Unmarshal(v, &s)
		return jsonString, s, err
	default:
		return jsonOther, string(v), nil
	}
}

// Raw is the input line itself when it is valid JSON, else the line as a JSON string.
func (n *ndjsonReader) Raw() json.RawMessage {
	if json.Valid(n.raw) {
		return append(json.RawMessage(nil), n.raw...)
	}
	b, _ := json.Marshal(string(n.raw))
	return b
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
