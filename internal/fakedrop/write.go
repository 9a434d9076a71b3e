package fakedrop

import (
	"bufio"
	"compress/gzip"
	"encoding/csv"
	"fmt"
	"io"
	"iter"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tidemark/tidemark/loader"
)

// WriteFile writes products to file in the format its name says (see [loader.FormatOf]):
// CSV or NDJSON, gzipped when the name ends in .gz.
func WriteFile(file string, products iter.Seq[Product]) (err error) {
	format, ok := loader.FormatOf(file)
	if !ok {
		return fmt.Errorf("write drop %s: want a .csv, .ndjson or .jsonl name, maybe .gz", file)
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("create drop: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write drop: %w", cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	var out io.Writer = bw
	var gz *gzip.Writer
	if strings.HasSuffix(strings.ToLower(file), ".gz") {
		gz = gzip.NewWriter(bw)
		out = gz
	}
	if format == loader.NDJSON {
		err = WriteNDJSON(out, products)
	} else {
		err = WriteCSV(out, products)
	}
	if err != nil {
		return err
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return fmt.Errorf("write drop: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write drop: %w", err)
	}
	return nil
}

// WriteCSV writes products as a CSV drop: a header of every column the loader knows
// ([loader.Columns]), then one record per product, attributes as a JSON object.
func WriteCSV(w io.Writer, products iter.Seq[Product]) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(loader.Columns[:]); err != nil {
		return fmt.Errorf("write drop: %w", err)
	}
	var attrs []byte
	rec := make([]string, len(loader.Columns))
	for p := range products {
		attrs = p.Attributes.AppendJSON(attrs[:0])
		rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6] = p.SKU, p.Name, p.Description, p.Price, p.Currency, p.Status, string(attrs)
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write drop: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write drop: %w", err)
	}
	return nil
}

// WriteNDJSON writes products as an NDJSON drop: one JSON object per line.
func WriteNDJSON(w io.Writer, products iter.Seq[Product]) error {
	var line []byte
	for p := range products {
		line = append(p.AppendJSON(line[:0]), '\n')
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("write drop: %w", err)
		}
	}
	return nil
}

// AppendJSON appends p as a JSON object: what encoding/json writes with HTML escaping off
// (an NDJSON drop's line).
func (p Product) AppendJSON(b []byte) []byte {
	b = appendMember(b, `{"sku":`, p.SKU)
	b = appendMember(b, `,"name":`, p.Name)
	b = appendMember(b, `,"description":`, p.Description)
	b = appendMember(b, `,"price":`, p.Price)
	b = appendMember(b, `,"currency":`, p.Currency)
	b = appendMember(b, `,"status":`, p.Status)
	b = append(b, `,"attributes":`...)
	b = p.Attributes.AppendJSON(b)
	return append(b, '}')
}

// AppendJSON appends a as a JSON object, keys in field order: what encoding/json writes with
// HTML escaping off, and what a drop's attributes column holds.
func (a Attributes) AppendJSON(b []byte) []byte {
	b = appendMember(b, `{"brand":`, a.Brand)
	b = appendMember(b, `,"category":`, a.Category)
	b = appendMember(b, `,"color":`, a.Color)
	if a.Material != "" {
		b = appendMember(b, `,"material":`, a.Material)
	}
	b = append(b, `,"tags":`...)
	if a.Tags == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, t := range a.Tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, t)
		}
		b = append(b, ']')
	}
	b = append(b, `,"weight_g":`...)
	b = strconv.AppendInt(b, int64(a.WeightG), 10)
	return append(b, '}')
}

// appendMember appends a string member: key is what comes before its value (the brace or
// comma, the quoted name and the colon).
func appendMember(b []byte, key, v string) []byte {
	return appendString(append(b, key...), v)
}

// appendString appends s as a JSON string, escaped as encoding/json does with HTML escaping
// off.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			if r == utf8.RuneError {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
