package replication

import (
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tidemark/tidemark/event"
)

// The value renderer: a column's text value as pgoutput sends it becomes its JSON form in the
// event (numbers as numbers, numeric as an exact string, timestamps as RFC 3339, ...).

// valueKind picks how a column's text value becomes JSON.
type valueKind uint8

const (
	kindString      valueKind = iota // JSON string of the text, escaped
	kindNumber                       // integers: the text is a JSON number
	kindFloat                        // a JSON number, or a string for NaN and ±Infinity
	kindNumeric                      // a JSON string holding the text exactly
	kindBool                         // t/f → true/false
	kindJSON                         // json/jsonb: the text is JSON
	kindTimestamptz                  // RFC 3339 in a JSON string
	kindOther                        // pgtype decodes it, encoding/json writes it
)

func kindOf(oid uint32) valueKind {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID, pgtype.XIDOID, pgtype.CIDOID:
		return kindNumber
	case pgtype.Float4OID, pgtype.Float8OID:
		return kindFloat
	case pgtype.NumericOID:
		return kindNumeric
	case pgtype.BoolOID:
		return kindBool
	case pgtype.JSONOID, pgtype.JSONBOID:
		return kindJSON
	case pgtype.TimestamptzOID:
		return kindTimestamptz
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.QCharOID,
		pgtype.UUIDOID, pgtype.DateOID, pgtype.TimeOID, pgtype.TimetzOID, pgtype.TimestampOID,
		pgtype.IntervalOID, pgtype.InetOID, pgtype.CIDROID, pgtype.MacaddrOID, pgtype.XMLOID,
		pgtype.BitOID, pgtype.VarbitOID:
		return kindString
	}
	return kindOther
}

var jsonNull = json.RawMessage("null")

// appendValue appends the JSON form of a column's text value.
func (d *decoder) appendValue(dst []byte, col *relColumn, v []byte) ([]byte, error) {
	switch col.kind {
	case kindNumber:
		if validNumber(v, false) {
			return append(dst, v...), nil
		}
		return event.AppendString(dst, v), nil
	case kindFloat:
		if validNumber(v, true) {
			return append(dst, v...), nil
		}
		// NaN, Infinity and -Infinity have no JSON number form.
		return event.AppendString(dst, v), nil
	case kindNumeric:
		return event.AppendString(dst, v), nil
	case kindBool:
		if len(v) == 1 && v[0] == 't' {
			return append(dst, "true"...), nil
		}
		return append(dst, "false"...), nil
	case kindJSON:
		// PostgreSQL only stores valid JSON, but a malformed event would poison every
		// consumer. event.Valid accepts what json.Valid does, at a fraction of its cost.
		if event.Valid(v) {
			return append(dst, v...), nil
		}
		return event.AppendString(dst, v), nil
	case kindTimestamptz:
		return appendTimestamptz(dst, v), nil
	case kindOther:
		return d.appendOther(dst, col.oid, v), nil
	}
	return event.AppendString(dst, v), nil
}

// validNumber reports whether v is a JSON number: PostgreSQL's integer output always is,
// its float output is unless NaN or ±Infinity.
func validNumber(v []byte, float bool) bool {
	if len(v) == 0 {
		return false
	}
	i := 0
	if v[0] == '-' {
		i++
	}
	if i >= len(v) || v[i] < '0' || v[i] > '9' || (v[i] == '0' && i+1 < len(v) && v[i+1] >= '0' && v[i+1] <= '9') {
		return false
	}
	if !float {
		for _, c := range v[i:] {
			if c < '0' || c > '9' {
				return false
			}
		}
		return true
	}
	return event.Valid(v)
}

// appendTimestamptz turns PostgreSQL's ISO output in UTC (2024-05-01 12:00:00.5+00, which the
// replication session asks for) into RFC 3339 (2024-05-01T12:00:00.5Z) without parsing.
func appendTimestamptz(dst, v []byte) []byte {
	n := len(v)
	if n >= 22 && n <= 40 && v[10] == ' ' && v[n-3] == '+' && v[n-2] == '0' && v[n-1] == '0' && v[4] == '-' {
		var buf [40]byte
		b := append(buf[:0], v[:10]...)
		b = append(b, 'T')
		b = append(b, v[11:n-3]...)
		b = append(b, 'Z')
		return event.AppendString(dst, b)
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07", "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999-07:00:00"} {
		if t, err := time.Parse(layout, string(v)); err == nil {
			dst = append(dst, '"')
			dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
			return append(dst, '"')
		}
	}
	// infinity, -infinity and BC dates have no RFC 3339 form: keep PostgreSQL's text.
	return event.AppendString(dst, v)
}

// appendOther decodes a value of a type without a fast path through pgtype and writes it
// with encoding/json (arrays become JSON arrays); anything pgtype cannot decode is sent as
// its text.
func (d *decoder) appendOther(dst []byte, oid uint32, v []byte) []byte {
	if typ, ok := d.types.TypeForOID(oid); ok {
		if val, err := typ.Codec.DecodeValue(d.types, oid, pgtype.TextFormatCode, v); err == nil {
			if b, err := json.Marshal(val); err == nil {
				return append(dst, b...)
			}
		}
	}
	return event.AppendString(dst, v)
}
