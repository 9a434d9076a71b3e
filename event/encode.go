package event

import (
	"encoding/base64"
	"math/bits"
	"strconv"
	"time"
)

// Format is the JSON layout of a published event.
type Format string

// The event formats.
const (
	// FormatNative is tidemark's own event, [Change] as documented in event.schema.json.
	FormatNative Format = "native"
	// FormatDebezium is Debezium's envelope (before, after, source, op, ts_ms), for
	// consumers written against Debezium's PostgreSQL connector.
	FormatDebezium Format = "debezium"
)

// DebeziumUnavailable is what Debezium puts in place of an unchanged TOAST value; the
// Debezium format does the same so its consumers see what they expect.
const DebeziumUnavailable = "__debezium_unavailable_value"

// AppendJSON appends c as tidemark's native event, documented in event.schema.json, to dst.
// It is the publishing hot path, so it writes by hand; [Change.MarshalJSON] uses it.
func (c *Change) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"op":`...)
	dst = AppendString(dst, string(c.Op))
	dst = append(dst, `,"schema":`...)
	dst = AppendString(dst, c.Schema)
	dst = append(dst, `,"table":`...)
	dst = AppendString(dst, c.Table)
	dst = append(dst, `,"key":{"supplier_id":`...)
	dst = strconv.AppendInt(dst, c.Key.SupplierID, 10)
	dst = append(dst, `,"id":`...)
	dst = strconv.AppendInt(dst, c.Key.ID, 10)
	dst = append(dst, '}')
	if c.Epoch != nil {
		dst = append(dst, `,"epoch":`...)
		dst = c.Epoch.appendJSON(dst, c.Op == OpEpochClose)
	}
	if c.After != nil {
		dst = append(dst, `,"after":`...)
		dst = c.After.appendJSON(dst, nil)
	}
	if c.Before != nil {
		dst = append(dst, `,"before":`...)
		dst = c.Before.appendJSON(dst, nil)
	}
	if len(c.UnchangedToast) > 0 {
		dst = append(dst, `,"unchanged_toast":[`...)
		for i, name := range c.UnchangedToast {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, name)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"source":{"slot":`...)
	dst = AppendString(dst, c.Source.Slot)
	dst = append(dst, `,"lsn":"`...)
	dst = c.Source.LSN.AppendTo(dst)
	dst = append(dst, `","commit_lsn":"`...)
	dst = c.Source.CommitLSN.AppendTo(dst)
	dst = append(dst, `","xid":`...)
	dst = strconv.AppendUint(dst, uint64(c.Source.XID), 10)
	dst = append(dst, `,"commit_ts":"`...)
	dst = c.Source.CommitTS.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendInt(dst, int64(c.Source.Seq), 10)
	dst = append(dst, `},"ts_ms":`...)
	dst = strconv.AppendInt(dst, c.TsMs, 10)
	return append(dst, '}')
}

// appendJSON writes the row as an object; the names in extra are added with value v.
func (r Row) appendJSON(dst []byte, extra []string) []byte {
	dst = append(dst, '{')
	for i, c := range r {
		if i > 0 {
			dst = append(dst, ',')
		}
		if k := c.key; len(k) == len(c.Name)+3 && k[1:len(k)-2] == c.Name {
			dst = append(dst, k...)
		} else {
			dst = AppendString(dst, c.Name)
			dst = append(dst, ':')
		}
		if len(c.Value) == 0 {
			dst = append(dst, "null"...)
		} else {
			dst = append(dst, c.Value...)
		}
	}
	for i, name := range extra {
		if i > 0 || len(r) > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, name)
		dst = append(dst, `:"`+DebeziumUnavailable+`"`...)
	}
	return append(dst, '}')
}

// debeziumOp is Debezium's one-letter operation code.
func debeziumOp(op Op) string {
	switch op {
	case OpInsert:
		return "c"
	case OpUpdate:
		return "u"
	case OpDelete:
		return "d"
	case OpSnapshot:
		return "r"
	case OpTruncate:
		return "t"
	}
	return string(op)
}

// appendJSON writes the epoch as an object; rows only for a close.
func (e *Epoch) appendJSON(dst []byte, rows bool) []byte {
	dst = append(dst, `{"id":`...)
	dst = AppendString(dst, e.ID)
	dst = append(dst, `,"supplier_id":`...)
	dst = strconv.AppendInt(dst, e.SupplierID, 10)
	dst = append(dst, `,"open_lsn":"`...)
	dst = e.OpenLSN.AppendTo(dst)
	dst = append(dst, '"')
	if rows {
		dst = append(dst, `,"rows":`...)
		dst = strconv.AppendInt(dst, e.Rows, 10)
	}
	return append(dst, '}')
}

// The prefixes of the Debezium message events ("op":"m") that carry epochs: Debezium's
// PostgreSQL connector turns a logical decoding message into such an event, and an epoch's
// open and close are logical decoding messages in the WAL.
const (
	DebeziumEpochOpenPrefix  = "tidemark.epoch.open"
	DebeziumEpochClosePrefix = "tidemark.epoch.close"
)

// appendDebeziumMessage writes an epoch event as Debezium writes a logical decoding message:
// op "m", and message.content the epoch (as in the native event) in base64, as
// JsonConverter writes bytes.
func (c *Change) appendDebeziumMessage(dst []byte) []byte {
	dst = append(dst, `{"op":"m","ts_ms":`...)
	dst = strconv.AppendInt(dst, c.TsMs, 10)
	dst = c.appendDebeziumSource(dst)
	dst = append(dst, `,"message":{"prefix":"`...)
	if c.Op == OpEpochOpen {
		dst = append(dst, DebeziumEpochOpenPrefix...)
	} else {
		dst = append(dst, DebeziumEpochClosePrefix...)
	}
	dst = append(dst, `","content":"`...)
	var buf [256]byte
	content := c.Epoch.appendJSON(buf[:0], c.Op == OpEpochClose)
	dst = base64.StdEncoding.AppendEncode(dst, content)
	return append(dst, `"}}`...)
}

// AppendDebezium appends c as a Debezium change event envelope (the payload without the
// schema part, as with JsonConverter schemas.enable=false): before, after, source, op, ts_ms.
// Unchanged TOAST columns carry Debezium's placeholder value in after. Epoch events are
// written as Debezium's message events: op "m" with message.prefix tidemark.epoch.open or
// tidemark.epoch.close and the epoch in message.content.
func (c *Change) AppendDebezium(dst []byte) []byte {
	if c.Epoch != nil && (c.Op == OpEpochOpen || c.Op == OpEpochClose) {
		return c.appendDebeziumMessage(dst)
	}
	dst = append(dst, `{"before":`...)
	if c.Before != nil {
		dst = c.Before.appendJSON(dst, nil)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"after":`...)
	if c.After != nil {
		dst = c.After.appendJSON(dst, c.UnchangedToast)
	} else {
		dst = append(dst, "null"...)
	}
	dst = c.appendDebeziumSource(dst)
	dst = append(dst, `,"op":"`...)
	dst = append(dst, debeziumOp(c.Op)...)
	dst = append(dst, `","ts_ms":`...)
	dst = strconv.AppendInt(dst, c.TsMs, 10)
	return append(dst, '}')
}

// appendDebeziumSource writes ,"source":{…}.
func (c *Change) appendDebeziumSource(dst []byte) []byte {
	dst = append(dst, `,"source":{"version":"tidemark","connector":"postgresql","name":`...)
	dst = AppendString(dst, c.Source.Slot)
	dst = append(dst, `,"ts_ms":`...)
	dst = strconv.AppendInt(dst, c.Source.CommitTS.UnixMilli(), 10)
	dst = append(dst, `,"snapshot":`...)
	if c.Op == OpSnapshot || c.Op == OpEpochOpen || c.Op == OpEpochClose {
		dst = append(dst, `"true"`...)
	} else {
		dst = append(dst, `"false"`...)
	}
	dst = append(dst, `,"schema":`...)
	dst = AppendString(dst, c.Schema)
	dst = append(dst, `,"table":`...)
	dst = AppendString(dst, c.Table)
	dst = append(dst, `,"txId":`...)
	dst = strconv.AppendUint(dst, uint64(c.Source.XID), 10)
	dst = append(dst, `,"lsn":`...)
	dst = strconv.AppendUint(dst, uint64(c.Source.LSN), 10)
	dst = append(dst, `,"commit_lsn":"`...)
	dst = c.Source.CommitLSN.AppendTo(dst)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendInt(dst, int64(c.Source.Seq), 10)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// Bytes of a word of eight, for finding the bytes a JSON string must escape eight at a time.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// escapes has the high bit set in each byte of w that is a control character, a double
// quote or a backslash, and maybe in bytes above (later than) such a byte: each test is the
// classic "has a byte less than n" trick, whose borrows only run upwards from a byte that
// matches. The lowest bit set is therefore always a byte to escape, and 0 means there is
// none; bytes of 0x80 and above (UTF-8) never match.
func escapes(w uint64) uint64 {
	q, b := w^('"'*ones), w^('\\'*ones)
	return ((w-0x20*ones)&^w | (q-ones)&^q | (b-ones)&^b) & highs
}

// word8 reads v[i:i+8] as a little-endian word (the first byte lowest).
func word8[T ~string | ~[]byte](v T, i int) uint64 {
	b := v[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// NextEscape returns the index of the first byte from i on that a JSON string may not hold
// as it is (a double quote, a backslash or a control character), len(v) if none. Text columns
// are long and rarely hold one: it looks at eight bytes at a time, the last (partial) eight
// read as the string's last eight bytes. The scanner finds the ends of strings with it too
// (and so Valid, the replicator's check of json and jsonb values).
func NextEscape[T ~string | ~[]byte](v T, i int) int {
	for ; i+8 <= len(v); i += 8 {
		if m := escapes(word8(v, i)); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	if i >= len(v) {
		return len(v)
	}
	if len(v) >= 8 {
		// The last eight bytes, those before i shifted out (a byte to escape among them
		// would borrow into the ones after it) and harmless 'a's shifted in.
		last := len(v) - 8
		sh := uint(i-last) * 8
		if m := escapes(word8(v, last)>>sh | 0x6161616161616161<<(64-sh)); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		return len(v)
	}
	for ; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == '"' || c == '\\' {
			return i
		}
	}
	return i
}

// AppendString appends v as a JSON string, as events write every string (without HTML
// escaping). Only quotes, backslashes and control characters are escaped: PostgreSQL sends
// valid UTF-8 in a UTF8 database.
func AppendString[T ~string | ~[]byte](dst []byte, v T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := NextEscape(v, 0); i < len(v); i = NextEscape(v, i) {
		dst = append(dst, v[start:i]...)
		switch c := v[i]; c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, v[start:]...)
	return append(dst, '"')
}
