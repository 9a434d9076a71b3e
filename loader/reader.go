// Package loader bulk-loads supplier drops (CSV or NDJSON, maybe gzipped) into the products
// table in one transaction: it reads and validates records as a stream and COPYs them straight
// into an empty partition, or into a temporary staging table applied with one set-based MERGE,
// so unchanged rows are not written at all.
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
	"strings"
)

// Format is the syntax of a drop.
type Format string

// The drop formats.
const (
	CSV    Format = "csv"
	NDJSON Format = "ndjson"
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

// ErrUnknownColumn is returned (wrapped, naming the column) for a column or key the loader does
// not know.
var ErrUnknownColumn = errors.New("unknown column")

// Record is one record of a drop, before validation.
type Record struct {
	// Line is the 1-based physical line where the record starts (the CSV header is line 1).
	Line int64
	// Fields holds the raw text of each column: empty when absent, empty or JSON null.
	Fields [numColumns]string
	// Reason is set when the record could not be parsed at all (bad quoting, invalid JSON,
	// a value of the wrong JSON type); Fields are then incomplete.
	Reason string
}

// Reader reads the records of a drop one at a time.
type Reader interface {
	// Next returns the next record, io.EOF after the last, or an error that ends the load
	// (an I/O error, an unknown column). The record is only valid until the next call.
	Next() (*Record, error)
	// Raw returns the record last returned as JSON, for the rejects file.
	Raw() json.RawMessage
}

// Open wraps r (the drop's bytes, maybe gzipped: recognised by its magic bytes) in a reader of
// the given format. For CSV it reads the header, so an unknown or missing column is reported
// before anything is loaded.
func Open(r io.Reader, format Format) (Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open gzip: %w", err)
		}
		br = bufio.NewReaderSize(zr, 256<<10)
	}
	// A UTF-8 byte order mark is tolerated (spreadsheets write one).
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3)
	}
	switch format {
	case CSV:
		return newCSVReader(br)
	case NDJSON:
		return newNDJSONReader(br), nil
	default:
		return nil, fmt.Errorf("unknown format %q (want csv or ndjson)", format)
	}
}

// FormatOf guesses the format from a file name: .csv, .ndjson or .jsonl, each optionally .gz.
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
	r      *csv.Reader
	header []string
	index  []int // CSV field position → column
	fields []string
	rec    Record
}

func newCSVReader(r io.Reader) (*csvReader, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("empty input: want a header row (sku,name,…)")
	}
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	c := &csvReader{r: cr, header: append([]string(nil), header...)}
	seen := map[int]bool{}
	for _, h := range c.header {
		i := columnIndex(strings.ToLower(strings.TrimSpace(h)))
		if i < 0 {
			return nil, fmt.Errorf("header: %w %q (known: %s)", ErrUnknownColumn, h, strings.Join(Columns[:], ", "))
		}
		if seen[i] {
			return nil, fmt.Errorf("header: column %q given twice", h)
		}
		seen[i] = true
		c.index = append(c.index, i)
	}
	for _, need := range []int{colSKU, colName} {
		if !seen[need] {
			return nil, fmt.Errorf("header: required column %q missing", Columns[need])
		}
	}
	return c, nil
}

func (c *csvReader) Next() (*Record, error) {
	c.rec = Record{}
	fields, err := c.r.Read()
	var perr *csv.ParseError
	switch {
	case err == nil:
		c.fields = fields
		c.rec.Line = int64(c.startLine())
		for i, f := range fields {
			c.rec.Fields[c.index[i]] = f
		}
		return &c.rec, nil
	case errors.As(err, &perr) && errors.Is(perr.Err, csv.ErrFieldCount):
		c.fields = fields
		c.rec.Line = int64(perr.StartLine)
		// The fields the header names are still known: a --full load keeps the product of a
		// record rejected for its field count.
		for i, f := range fields[:min(len(fields), len(c.index))] {
			c.rec.Fields[c.index[i]] = f
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

func (c *csvReader) startLine() int {
	line, _ := c.r.FieldPos(0)
	return line
}

// Raw is the record as an object of header name → field (extra fields under "_extra").
func (c *csvReader) Raw() json.RawMessage {
	if c.fields == nil {
		return json.RawMessage("null")
	}
	var b bytes.Buffer
	b.WriteByte('{')
	var extra []string
	for i, f := range c.fields {
		if i >= len(c.header) {
			extra = append(extra, f)
			continue
		}
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, c.header[i])
		b.WriteByte(':')
		writeJSONString(&b, f)
	}
	if extra != nil {
		if len(c.fields) > len(extra) {
			b.WriteByte(',')
		}
		b.WriteString(`"_extra":`)
		e, _ := json.Marshal(extra)
		b.Write(e)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func writeJSONString(b *bytes.Buffer, s string) {
	e, _ := json.Marshal(s) // invalid UTF-8 becomes U+FFFD: the rejects file stays valid JSON
	b.Write(e)
}

// maxLine bounds one NDJSON line, so a file without newlines cannot take all memory.
const maxLine = 64 << 20

type ndjsonReader struct {
	s    *bufio.Scanner
	line int64
	raw  []byte
	rec  Record
}

func newNDJSONReader(r io.Reader) *ndjsonReader {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64<<10), maxLine)
	return &ndjsonReader{s: s}
}

func (n *ndjsonReader) Next() (*Record, error) {
	for n.s.Scan() {
		n.line++
		line := bytes.TrimSpace(n.s.Bytes())
		if len(line) == 0 {
			continue
		}
		n.raw = line
		n.rec = Record{Line: n.line}
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

func (n *ndjsonReader) parse(line []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil || obj == nil {
		n.rec.Reason = "record: not a JSON object"
		if err != nil {
			n.rec.Reason += ": " + err.Error()
		}
		return nil
	}
	for k := range obj {
		if columnIndex(k) < 0 {
			return fmt.Errorf("line %d: %w %q (known: %s)", n.line, ErrUnknownColumn, k, strings.Join(Columns[:], ", "))
		}
	}
	// Every field is read even after a bad one, in column order: the first problem is the
	// reason, and the sku of a rejected record is still known (a --full load keeps its product).
	fail := func(reason string) {
		if n.rec.Reason == "" {
			n.rec.Reason = reason
		}
	}
	for i, col := range Columns {
		v, ok := obj[col]
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case string(v) == "null":
		case v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				fail(col + ": " + err.Error())
			} else if i == colAttributes {
				fail("attributes: not a JSON object (a string)")
			} else {
				n.rec.Fields[i] = s
			}
		case i == colPrice && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')):
			n.rec.Fields[i] = string(v)
		case i == colAttributes && v[0] == '{':
			n.rec.Fields[i] = string(v)
		case i == colAttributes:
			fail("attributes: not a JSON object")
		default:
			fail(fmt.Sprintf("%s: not a string (%s)", col, truncate(string(v), 40)))
		}
	}
	return nil
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
