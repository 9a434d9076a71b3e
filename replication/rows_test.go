package replication

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tidemark/tidemark/event"
)

// referenceString is a JSON string as events wrote them before the word-at-a-time scan: a
// byte-wise loop escaping quotes, backslashes and control characters only.
func referenceString(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[c>>4])
			b.WriteByte("0123456789abcdef"[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestDecodeRowsMatchReference decodes inserts and updates of varied rows (NULLs, unchanged
// TOAST, UTF-8, quotes, backslashes and control characters where a word of eight would
// borrow, numeric, arrays, valid and invalid jsonb, a column name to escape) and checks
// every value against its reference rendering, and the event against the one written from
// plain columns (names escaped for each event).
func TestDecodeRowsMatchReference(t *testing.T) {
	cols := []struct {
		name string
		oid  uint32
	}{
		{"id", pgtype.Int8OID}, {"supplier_id", pgtype.Int4OID}, {"name", pgtype.TextOID},
		{"description", pgtype.TextOID}, {"price", pgtype.NumericOID}, {"attributes", pgtype.JSONBOID},
		{"tags", pgtype.TextArrayOID}, {"sizes", pgtype.Int4ArrayOID}, {`odd "name"\`, pgtype.TextOID},
	}
	rel := binary.BigEndian.AppendUint32([]byte{'R'}, 16500)
	rel = append(rel, "public\x00variety\x00d"...)
	rel = binary.BigEndian.AppendUint16(rel, uint16(len(cols)))
	for i, c := range cols {
		rel = append(rel, byte(min(i, 1)^1)) // id is the key
		rel = append(rel, c.name...)
		rel = binary.BigEndian.AppendUint32(append(rel, 0), c.oid)
		rel = binary.BigEndian.AppendUint32(rel, 0xffffffff)
	}
	texts := []string{"", "plain", "Crème & Co – Zürich, 5 °C × 3", `a "storm" hood`, "ends with a quote\"#",
		`back\slash]`, "tab\there\nnew\rline\x00 end", "\x1f \x01", strings.Repeat("Fjellrø ", 30) + `"q"`,
		"\xe2\x80\xa8 line separator", "12345678\"#\\]\x00 "}
	jsons := []string{`{}`, `{"tags": ["trail", "dry"], "brand": "Ridgeline", "weight_g": 410}`,
		`{"a": "\"quoted\" \\ back\\]", "b": [1, 2.5e3, null, true]}`, `{"bad": }`, `[1, 2`}
	d := newTestDecoder(t)
	if _, err := d.decode(1, rel, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		text := func(k int) string { return texts[(i+k)%len(texts)] }
		vals := []string{"7", "42", text(0), text(1), "1234.50", jsons[i%len(jsons)], `{a,"b c",NULL,"d\"e"}`, "{1,2,3}", text(2)}
		want := map[string]string{"id": "7", "supplier_id": "42", "name": referenceString(text(0)),
			"description": referenceString(text(1)), "price": `"1234.50"`, "tags": `["a","b c",null,"d\"e"]`,
			"sizes": "[1,2,3]", `odd "name"\`: referenceString(text(2))}
		if j := jsons[i%len(jsons)]; json.Valid([]byte(j)) {
			want["attributes"] = j
		} else {
			want["attributes"] = referenceString(j)
		}
		switch i % 4 {
		case 1:
			vals[3], want["description"] = "\x00null", "null"
		case 2:
			vals[3] = "\x00toast"
			delete(want, "description")
		}
		typ := byte('I')
		if i%2 == 1 {
			typ = 'U'
		}
		msg := binary.BigEndian.AppendUint32([]byte{typ}, 16500)
		msg = append(append(msg, 'N'), tupleData(vals...)...)
		if _, err := d.decode(1, msg, func(c *event.Change) error {
			got := map[string]string{}
			var plain event.Row
			for _, col := range c.After {
				got[col.Name] = string(col.Value)
				plain = append(plain, event.Column{Name: col.Name, Value: col.Value})
			}
			for name, w := range want {
				if got[name] != w {
					t.Errorf("row %d: %s = %s, want %s", i, name, got[name], w)
				}
			}
			if len(got) != len(want) {
				t.Errorf("row %d: columns %v, want %v", i, got, want)
			}
			native := c.AppendJSON(nil)
			general := *c
			general.After = plain
			if ref := general.AppendJSON(nil); !bytes.Equal(native, ref) {
				t.Errorf("row %d: event\n%s\nwritten from plain columns\n%s", i, native, ref)
			}
			if !json.Valid(native) || !json.Valid(c.AppendDebezium(nil)) {
				t.Errorf("row %d: invalid JSON %s", i, native)
			}
			return nil
		}); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}
}
