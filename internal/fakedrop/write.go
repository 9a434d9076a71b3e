package fakedrop

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"os"
	"strings"

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
	enc := newEncoder(w)
	for p := range products {
		if err := enc.Encode(p); err != nil {
			return fmt.Errorf("write drop: %w", err)
		}
	}
	return nil
}

// AppendJSON appends p as encoding/json writes it with HTML escaping off: an NDJSON drop's
// line, without its newline.
func (p Product) AppendJSON(b []byte) []byte { return appendJSON(b, p) }

// AppendJSON appends a as encoding/json writes it with HTML escaping off: what a drop's
// attributes column holds.
func (a Attributes) AppendJSON(b []byte) []byte { return appendJSON(b, a) }

// newEncoder writes a drop's JSON: encoding/json's, without HTML escaping (\u003c for '<' is
// for JSON inside HTML, not for a drop).
func newEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// appendJSON appends v's JSON without the newline an Encoder ends it with. A Product holds
// only strings, an int and a []string, which always encode: an error is a field added that
// does not, and panics rather than write a drop without its objects.
func appendJSON(b []byte, v any) []byte {
	buf := bytes.NewBuffer(b)
	if err := newEncoder(buf).Encode(v); err != nil {
		panic(fmt.Sprintf("fakedrop: encode %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}
