package loader

import (
	"archive/zip"
	"bufio"
	"encoding/binary"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strconv"
	"strings"
)

// An XLSX workbook is a zip of XML parts: the workbook lists its sheets, each sheet part holds
// its rows, and the text of most cells sits in one shared-strings part, referenced by index.
// The reader streams the chosen sheet's XML row by row. The shared strings, which may be as
// large as all the text of the sheet, are first copied to a temporary file with an index of
// their offsets beside them, so memory stays flat whatever the workbook's size; lookups go
// through a small window that follows them (Excel numbers the strings in the order it meets
// them, so the rows mostly read them in order).

// xlsxWindow is the size of each window on the shared-strings files.
const xlsxWindow = 64 << 10

// maxXLSXColumns is Excel's column limit (XFD).
const maxXLSXColumns = 16384

type xlsxCell struct {
	text string
	num  bool // a number or boolean: the attributes get it as JSON, prices need no separators
}

type xlsxReader struct {
	pl      *plan
	closers []io.Closer
	sst     *sharedStrings
	dec     *xml.Decoder
	header  []string
	targets []target
	cells   []xlsxCell
	fields  []string
	rec     Record
	attrs   []attrValue
	buf     []byte
	row     int64 // the spreadsheet row number of the last row read
	chars   []byte
}

// openXLSX opens an XLSX drop at the header row of its sheet (the profile's, else the first).
func openXLSX(r io.Reader, pl *plan) (_ *xlsxReader, err error) {
	x := &xlsxReader{pl: pl}
	defer func() {
		if err != nil {
			_ = x.Close()
		}
	}()
	ra, size, err := x.randomAccess(r)
	if err != nil {
		return nil, err
	}
	if _, err := x.open(ra, size); err != nil {
		return nil, err
	}
	if x.targets, err = pl.resolveHeader(x.header); err != nil {
		return nil, fmt.Errorf("row %d: %w", x.row, err)
	}
	return x, nil
}

// open reads the workbook up to the header row of the sheet and returns the workbook's sheets.
func (x *xlsxReader) open(ra io.ReaderAt, size int64) ([]string, error) {
	parts, err := workbookParts(ra, size)
	if err != nil {
		return nil, err
	}
	sheetPath, sstPath, sheets, err := findSheet(parts, x.pl.sheet)
	if err != nil {
		return nil, err
	}
	if sstPath != "" {
		if x.sst, err = x.loadSharedStrings(parts[strings.ToLower(sstPath)]); err != nil {
			return nil, err
		}
	}
	sheet, err := parts[strings.ToLower(sheetPath)].Open()
	if err != nil {
		return nil, fmt.Errorf("open xlsx sheet: %w", err)
	}
	x.closers = append(x.closers, sheet)
	x.dec = xml.NewDecoder(bufio.NewReaderSize(sheet, 64<<10))
	for {
		ok, err := x.readRow()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errors.New("empty sheet: want a header row (sku, name, …)")
		}
		if x.nonEmpty() > 0 {
			break
		}
	}
	for _, c := range x.cells[:x.nonEmpty()] {
		x.header = append(x.header, c.text)
	}
	return sheets, nil
}

// workbookParts opens the workbook's zip and returns its parts by lower-cased name: the Open
// Packaging Conventions compare part names without case, so a relationship may name a part
// in another case than its zip entry.
func workbookParts(ra io.ReaderAt, size int64) (map[string]*zip.File, error) {
	zr, err := zip.NewReader(ra, size)
	if err != nil {
		return nil, fmt.Errorf("open xlsx: %w (the format is xlsx: is the drop an XLSX workbook?)", err)
	}
	parts := make(map[string]*zip.File, len(zr.File))
	for _, f := range zr.File {
		parts[strings.ToLower(f.Name)] = f
	}
	return parts, nil
}

// randomAccess returns the drop as a zip reader needs it: a regular file as it is, anything
// else copied to a temporary file first.
func (x *xlsxReader) randomAccess(r io.Reader) (io.ReaderAt, int64, error) {
	if ra, ok := r.(interface {
		io.ReaderAt
		Size() int64
	}); ok {
		return ra, ra.Size(), nil
	}
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			return f, st.Size(), nil
		}
	}
	f, err := x.tempFile()
	if err != nil {
		return nil, 0, err
	}
	n, err := io.Copy(f, r)
	if err != nil {
		return nil, 0, fmt.Errorf("copy xlsx drop to a temporary file: %w", err)
	}
	return f, n, nil
}

// tempFile creates a temporary file that is gone once closed; on Linux it is unlinked at
// once, so even a killed load leaves nothing behind.
func (x *xlsxReader) tempFile() (*os.File, error) {
	f, err := os.CreateTemp("", "tidemark-xlsx-*")
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	if os.Remove(f.Name()) != nil {
		x.closers = append(x.closers, removeOnClose{f})
	} else {
		x.closers = append(x.closers, f)
	}
	return f, nil
}

type removeOnClose struct{ f *os.File }

func (r removeOnClose) Close() error {
	err := r.f.Close()
	_ = os.Remove(r.f.Name())
	return err
}

// Close releases the temporary files and the sheet.
func (x *xlsxReader) Close() error {
	var errs []error
	for i := len(x.closers) - 1; i >= 0; i-- {
		if err := x.closers[i].Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	x.closers = nil
	return errors.Join(errs...)
}

type xmlRels struct {
	Rels []struct {
		ID     string `xml:"Id,attr"`
		Type   string `xml:"Type,attr"`
		Target string `xml:"Target,attr"`
	} `xml:"Relationship"`
}

type xmlWorkbook struct {
	Sheets []struct {
		Name string `xml:"name,attr"`
		RID  string `xml:"id,attr"`
	} `xml:"sheets>sheet"`
}

func readXMLPart(parts map[string]*zip.File, name string, v any) error {
	f, ok := parts[strings.ToLower(name)]
	if !ok {
		return fmt.Errorf("open xlsx: the workbook has no part %s", name)
	}
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("open xlsx part %s: %w", name, err)
	}
	defer rc.Close()
	// The parts read whole are small: the package's and the workbook's lists.
	if err := xml.NewDecoder(io.LimitReader(rc, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("read xlsx part %s: %w", name, err)
	}
	return nil
}

// relsOf returns the relationships of a part, id → (type, target resolved to a part name).
func relsOf(parts map[string]*zip.File, part string) (map[string][2]string, error) {
	dir, file := path.Split(part)
	var rels xmlRels
	if err := readXMLPart(parts, dir+"_rels/"+file+".rels", &rels); err != nil {
		return nil, err
	}
	out := map[string][2]string{}
	for _, r := range rels.Rels {
		target := r.Target
		if strings.HasPrefix(target, "/") {
			target = target[1:]
		} else {
			target = path.Join(dir, target)
		}
		out[r.ID] = [2]string{r.Type, target}
	}
	return out, nil
}

// findSheet returns the part of the sheet named (the first when name is empty), the
// shared-strings part, if any, and the names of every sheet.
func findSheet(parts map[string]*zip.File, name string) (sheet, sst string, names []string, _ error) {
	root, err := relsOf(parts, "")
	if err != nil {
		return "", "", nil, err
	}
	book := ""
	for _, r := range root {
		if strings.HasSuffix(r[0], "/officeDocument") {
			book = r[1]
		}
	}
	if book == "" {
		return "", "", nil, errors.New("open xlsx: no workbook in the package")
	}
	var wb xmlWorkbook
	if err := readXMLPart(parts, book, &wb); err != nil {
		return "", "", nil, err
	}
	rels, err := relsOf(parts, book)
	if err != nil {
		return "", "", nil, err
	}
	for _, r := range rels {
		if strings.HasSuffix(r[0], "/sharedStrings") {
			sst = r[1]
		}
	}
	for _, s := range wb.Sheets {
		names = append(names, s.Name)
	}
	for _, s := range wb.Sheets {
		if name == "" || s.Name == name || strings.EqualFold(strings.TrimSpace(s.Name), strings.TrimSpace(name)) {
			r, ok := rels[s.RID]
			if !ok || parts[strings.ToLower(r[1])] == nil {
				return "", "", nil, fmt.Errorf("open xlsx: sheet %q has no part", s.Name)
			}
			return r[1], sst, names, nil
		}
	}
	if name == "" {
		return "", "", nil, errors.New("open xlsx: the workbook has no sheet")
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	return "", "", nil, fmt.Errorf("sheet %q is not in the workbook (its sheets: %s): set sheet: in the profile or give --sheet", name, strings.Join(quoted, ", "))
}

// sharedStrings is the workbook's string table on disk: the strings one after another in
// one file, the end offset of each as 8 bytes in another.
type sharedStrings struct {
	data, index window
	n           int64
}

type window struct {
	f   *os.File
	buf []byte
	off int64 // file offset of buf[0]
}

// read returns n bytes at offset at, valid until the next read.
func (w *window) read(at int64, n int) ([]byte, error) {
	if at >= w.off && at+int64(n) <= w.off+int64(len(w.buf)) {
		return w.buf[at-w.off:][:n], nil
	}
	if n > xlsxWindow {
		b := make([]byte, n)
		if _, err := w.f.ReadAt(b, at); err != nil {
			return nil, err
		}
		return b, nil
	}
	if w.buf == nil {
		w.buf = make([]byte, xlsxWindow)
	}
	m, err := w.f.ReadAt(w.buf[:cap(w.buf)], at)
	if m < n {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		w.buf, w.off = w.buf[:0], 0
		return nil, err
	}
	w.buf, w.off = w.buf[:m], at
	return w.buf[:n], nil
}

func (s *sharedStrings) get(i int64) (string, error) {
	if i < 0 || i >= s.n {
		return "", fmt.Errorf("shared string %d does not exist (the workbook has %d)", i, s.n)
	}
	var start, end int64
	if i == 0 {
		b, err := s.index.read(0, 8)
		if err != nil {
			return "", fmt.Errorf("read shared strings: %w", err)
		}
		end = int64(binary.LittleEndian.Uint64(b))
	} else {
		b, err := s.index.read(8*(i-1), 16)
		if err != nil {
			return "", fmt.Errorf("read shared strings: %w", err)
		}
		start, end = int64(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:]))
	}
	if end < start {
		return "", errors.New("read shared strings: corrupt index")
	}
	b, err := s.data.read(start, int(end-start))
	if err != nil {
		return "", fmt.Errorf("read shared strings: %w", err)
	}
	return string(b), nil
}

// loadSharedStrings copies the string table to disk as it streams.
func (x *xlsxReader) loadSharedStrings(part *zip.File) (*sharedStrings, error) {
	if part == nil {
		return nil, errors.New("open xlsx: the shared strings part is missing")
	}
	rc, err := part.Open()
	if err != nil {
		return nil, fmt.Errorf("open xlsx shared strings: %w", err)
	}
	defer rc.Close()
	data, err := x.tempFile()
	if err != nil {
		return nil, err
	}
	index, err := x.tempFile()
	if err != nil {
		return nil, err
	}
	dw, iw := bufio.NewWriterSize(data, 64<<10), bufio.NewWriterSize(index, 64<<10)
	s := &sharedStrings{data: window{f: data}, index: window{f: index}}
	dec := xml.NewDecoder(bufio.NewReaderSize(rc, 64<<10))
	var (
		off int64
		e   [8]byte
		txt []byte
	)
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read xlsx shared strings: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "si" {
			if txt, err = x.richText(dec, "si", txt[:0]); err != nil {
				return nil, fmt.Errorf("read xlsx shared strings: %w", err)
			}
			txt = unescapeOOXML(txt)
			if _, err := dw.Write(txt); err != nil {
				return nil, fmt.Errorf("write shared strings: %w", err)
			}
			off += int64(len(txt))
			binary.LittleEndian.PutUint64(e[:], uint64(off))
			if _, err := iw.Write(e[:]); err != nil {
				return nil, fmt.Errorf("write shared strings: %w", err)
			}
			s.n++
		}
	}
	if err := dw.Flush(); err != nil {
		return nil, fmt.Errorf("write shared strings: %w", err)
	}
	if err := iw.Flush(); err != nil {
		return nil, fmt.Errorf("write shared strings: %w", err)
	}
	return s, nil
}

// richText appends the text of an element holding <t> runs (a shared string or an inline
// one) up to its end, leaving out phonetic runs (<rPh>), which are not part of the text.
func (x *xlsxReader) richText(dec *xml.Decoder, end string, out []byte) ([]byte, error) {
	inT, phonetic := false, 0
	for {
		tok, err := dec.RawToken()
		if err != nil {
			return out, fmt.Errorf("unexpected end of %s: %w", end, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "t":
				inT = true
			case "rPh":
				phonetic++
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "t":
				inT = false
			case "rPh":
				phonetic--
			case end:
				return out, nil
			}
		case xml.CharData:
			if inT && phonetic == 0 {
				out = append(out, t...)
			}
		}
	}
}

// unescapeOOXML decodes the _xHHHH_ escapes OOXML writes for characters XML cannot hold.
func unescapeOOXML(b []byte) []byte {
	if !strings.Contains(string(b), "_x") {
		return b
	}
	s := string(b)
	out := b[:0]
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+6 < len(s) && s[i+1] == 'x' && s[i+6] == '_' {
			if v, err := strconv.ParseUint(s[i+2:i+6], 16, 16); err == nil {
				out = append(out, string(rune(v))...)
				i += 6
				continue
			}
		}
		out = append(out, s[i])
	}
	return out
}

// readRow reads the next <row> into x.cells; false at the end of the sheet.
func (x *xlsxReader) readRow() (bool, error) {
	for {
		tok, err := x.dec.RawToken()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read xlsx sheet after row %d: %w", x.row, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local == "row" {
				x.row++
				if v := attr(t, "r"); v != "" {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil || n < 1 {
						return false, fmt.Errorf("read xlsx sheet: row number %q", v)
					}
					x.row = n
				}
				return true, x.readCells()
			}
		case xml.EndElement:
			if t.Name.Local == "sheetData" {
				return false, nil
			}
		}
	}
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// readCells reads the cells of the current row, up to </row>.
func (x *xlsxReader) readCells() error {
	x.cells = x.cells[:0]
	col := -1
	for {
		tok, err := x.dec.RawToken()
		if err != nil {
			return fmt.Errorf("read xlsx sheet row %d: %w", x.row, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "c" {
				continue
			}
			col++
			if ref := attr(t, "r"); ref != "" {
				c, ok := columnOfRef(ref)
				if !ok {
					return fmt.Errorf("read xlsx sheet row %d: cell reference %q", x.row, ref)
				}
				col = c
			}
			if col >= maxXLSXColumns {
				return fmt.Errorf("read xlsx sheet row %d: more than %d columns", x.row, maxXLSXColumns)
			}
			cell, err := x.readCell(attr(t, "t"))
			if err != nil {
				return err
			}
			for len(x.cells) < col {
				x.cells = append(x.cells, xlsxCell{})
			}
			if len(x.cells) == col {
				x.cells = append(x.cells, cell)
			} else {
				x.cells[col] = cell
			}
		case xml.EndElement:
			if t.Name.Local == "row" {
				return nil
			}
		}
	}
}

// readCell reads a cell's value up to </c>, by its type.
func (x *xlsxReader) readCell(typ string) (xlsxCell, error) {
	var v []byte
	inV, inF := false, false
	x.chars = x.chars[:0]
	for {
		tok, err := x.dec.RawToken()
		if err != nil {
			return xlsxCell{}, fmt.Errorf("read xlsx sheet row %d: %w", x.row, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "v":
				inV = true
			case "f":
				inF = true // the formula; its cached value is in <v>
			case "is":
				if x.chars, err = x.richText(x.dec, "is", x.chars[:0]); err != nil {
					return xlsxCell{}, fmt.Errorf("read xlsx sheet row %d: %w", x.row, err)
				}
				v = unescapeOOXML(x.chars)
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "v":
				inV = false
			case "f":
				inF = false
			case "c":
				return x.cellValue(typ, v)
			}
		case xml.CharData:
			if inV && !inF {
				x.chars = append(x.chars, t...)
				v = x.chars
			}
		}
	}
}

func (x *xlsxReader) cellValue(typ string, v []byte) (xlsxCell, error) {
	if len(v) == 0 {
		return xlsxCell{}, nil
	}
	switch typ {
	case "s":
		if x.sst == nil {
			return xlsxCell{}, fmt.Errorf("read xlsx sheet row %d: a shared string, and the workbook has none", x.row)
		}
		i, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		if err != nil {
			return xlsxCell{}, fmt.Errorf("read xlsx sheet row %d: shared string index %q", x.row, v)
		}
		s, err := x.sst.get(i)
		if err != nil {
			return xlsxCell{}, fmt.Errorf("read xlsx sheet row %d: %w", x.row, err)
		}
		return xlsxCell{text: s}, nil
	case "str":
		return xlsxCell{text: string(unescapeOOXML(v))}, nil
	case "inlineStr", "e", "d":
		return xlsxCell{text: string(v)}, nil
	case "b":
		if string(v) == "1" {
			return xlsxCell{text: "true", num: true}, nil
		}
		return xlsxCell{text: "false", num: true}, nil
	default: // "n" or none: a number
		if s, ok := normNumber(string(v)); ok {
			return xlsxCell{text: s, num: true}, nil
		}
		return xlsxCell{text: string(v)}, nil
	}
}

// normNumber writes a number cell's value as a plain decimal. Excel keeps 15 significant
// digits, and the binary double it stores may print more (12.300000000000001 for 12.3).
func normNumber(v string) (string, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return v, false
	}
	f, _ = strconv.ParseFloat(strconv.FormatFloat(f, 'g', 15, 64), 64)
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if s == "-0" {
		s = "0"
	}
	return s, true
}

// columnOfRef returns the 0-based column of a cell reference such as "AB12".
func columnOfRef(ref string) (int, bool) {
	col, i := 0, 0
	for ; i < len(ref); i++ {
		c := ref[i] | 0x20 // lower case
		if c < 'a' || c > 'z' {
			break
		}
		col = col*26 + int(c-'a'+1)
		if col > maxXLSXColumns {
			return 0, false
		}
	}
	if i == 0 {
		return 0, false
	}
	return col - 1, true
}

// nonEmpty is one past the last cell of the row with a value.
func (x *xlsxReader) nonEmpty() int {
	n := len(x.cells)
	for n > 0 && x.cells[n-1].text == "" {
		n--
	}
	return n
}

func (x *xlsxReader) Next() (*Record, error) {
	for {
		ok, err := x.readRow()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, io.EOF
		}
		if n := x.nonEmpty(); n > 0 {
			return &x.rec, x.place(n)
		}
	}
}

// place makes the record of the row just read, whose last value is in cell n-1.
func (x *xlsxReader) place(n int) error {
	x.rec = Record{Line: x.row, valid8: true} // encoding/xml accepts nothing but UTF-8
	x.fields = x.fields[:0]
	for _, c := range x.cells[:max(n, len(x.header))] {
		x.fields = append(x.fields, c.text)
	}
	for len(x.fields) < len(x.header) {
		x.fields = append(x.fields, "")
	}
	if n > len(x.header) {
		x.rec.Reason = fmt.Sprintf("record: a value in column %s, beyond the header's %d columns", columnName(n-1), len(x.header))
	}
	rec := &x.rec
	x.attrs = x.attrs[:0]
	priceNum := false
	for i, t := range x.targets {
		if i >= len(x.cells) {
			break
		}
		c := x.cells[i]
		switch {
		case t.col >= 0:
			rec.Fields[t.col] = c.text
			if t.col == colPrice {
				priceNum = c.num
			}
		case t.col == toAttribute:
			x.attrs = append(x.attrs, attrValue{key: t.attr, val: c.text, num: c.num})
		case t.col == toBlank && c.text != "" && rec.Reason == "":
			rec.Reason = blankReason(i)
		}
	}
	if !x.pl.plain {
		x.buf = x.pl.finish(rec, x.attrs, priceNum, x.buf)
	}
	return nil
}

// columnName is the spreadsheet name of a 0-based column: A, B, …, Z, AA, …
func columnName(i int) string {
	var b []byte
	for i++; i > 0; i = (i - 1) / 26 {
		b = append([]byte{byte('A' + (i-1)%26)}, b...)
	}
	return string(b)
}

// Raw is the row as an object of header name → cell text.
func (x *xlsxReader) Raw() json.RawMessage { return rawObject(x.header, x.fields) }
