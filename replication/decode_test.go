package replication

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tidemark/tidemark/event"
)

// Hand-built pgoutput messages, as PostgreSQL sends them for products.

func relationMsg() []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, 16400)
	b = append(b, "public\x00products\x00"...)
	b = append(b, 'd')
	cols := []struct {
		name string
		oid  uint32
		key  bool
	}{
		{"id", pgtype.Int8OID, true}, {"supplier_id", pgtype.Int4OID, true}, {"sku", pgtype.VarcharOID, false},
		{"name", pgtype.TextOID, false}, {"description", pgtype.TextOID, false}, {"price", pgtype.NumericOID, false},
		{"currency", pgtype.BPCharOID, false}, {"status", pgtype.TextOID, false}, {"attributes", pgtype.JSONBOID, false},
		{"updated_at", pgtype.TimestamptzOID, false},
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		flag := byte(0)
		if c.key {
			flag = 1
		}
		b = append(b, flag)
		b = append(b, c.name...)
		b = append(b, 0)
		b = binary.BigEndian.AppendUint32(b, c.oid)
		b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

func tupleData(vals ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		switch v {
		case "\x00null":
			b = append(b, 'n')
		case "\x00toast":
			b = append(b, 'u')
		default:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

var productRow = []string{"123456", "42", "SKU-123456", "Product 123456", "A useful \"thing\"\nwith two lines",
	"1234.50", "EUR", "active", `{"color": "red", "size": 3}`, "2024-05-01 12:00:00.123456+00"}

func insertMsg() []byte {
	b := []byte{'I'}
	b = binary.BigEndian.AppendUint32(b, 16400)
	b = append(b, 'N')
	return append(b, tupleData(productRow...)...)
}

func beginMsg() []byte {
	b := []byte{'B'}
	b = binary.BigEndian.AppendUint64(b, 0x16B374D848)
	b = binary.BigEndian.AppendUint64(b, 700000000000000)
	return binary.BigEndian.AppendUint32(b, 777)
}

func newTestDecoder(t testing.TB) *decoder {
	d := newDecoder("tidemark")
	d.now = func() time.Time { return time.UnixMilli(1700000000000) }
	for _, m := range [][]byte{relationMsg(), beginMsg()} {
		if _, err := d.decode(1, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestDecodeInsert(t *testing.T) {
	d := newTestDecoder(t)
	var got []byte
	res, err := d.decode(0x16B374D000, insertMsg(), func(c *event.Change) error {
		got = c.AppendJSON(nil)
		return nil
	})
	if err != nil || res.kind != msgChange {
		t.Fatalf("decode: %v %v", res, err)
	}
	var c event.Change
	if err := json.Unmarshal(got, &c); err != nil {
		t.Fatalf("%v\n%s", err, got)
	}
	if c.Key != (event.Key{SupplierID: 42, ID: 123456}) || c.Source.CommitLSN.String() != "16/B374D848" || c.Source.XID != 777 {
		t.Errorf("decoded %+v", c)
	}
	if v, _ := c.After.Get("updated_at"); string(v) != `"2024-05-01T12:00:00.123456Z"` {
		t.Errorf("updated_at %s", v)
	}
	if v, _ := c.After.Get("price"); string(v) != `"1234.50"` {
		t.Errorf("price %s", v)
	}
}

// TestDecodeBadInput: truncated and malformed messages give ErrProtocol, never a panic.
func TestDecodeBadInput(t *testing.T) {
	ins := insertMsg()
	rel := relationMsg()
	upd := updateMsg(true)
	cases := map[string][]byte{
		"empty":             {},
		"unknown type":      {'Z', 1, 2},
		"insert cut":        ins[:len(ins)-5],
		"insert header":     ins[:6],
		"relation cut":      rel[:12],
		"unknown relation":  append([]byte{'I', 0, 0, 0, 9, 'N'}, tupleData("1")...),
		"binary column":     append([]byte{'I', 0, 0, 0x40, 0x10, 'N', 0, 1, 'b', 0, 0, 0, 1}, 'x'),
		"too many columns":  append([]byte{'I', 0, 0, 0x40, 0x10, 'N'}, tupleData(make([]string, 20)...)...),
		"truncate cut":      {'T', 0, 0, 0, 5, 0, 0, 0, 0, 1},
		"message cut":       {'M', 0, 0, 0, 0, 0, 0, 0, 0, 1, 'p', 0, 0, 0, 0, 50, 'x'},
		"delete no old key": {'D', 0, 0, 0x40, 0x10, 'X'},
		"insert old key":    append([]byte{'I', 0, 0, 0x40, 0x10, 'K'}, tupleData(productRow...)...),
		"update no tuple":   {'U', 0, 0, 0x40, 0x10, 'X'},
		"update old only":   upd[:bytes.LastIndexByte(upd, 'N')],
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			d := newTestDecoder(t)
			_, err := d.decode(1, msg, func(*event.Change) error { return nil })
			if !errors.Is(err, ErrProtocol) {
				t.Errorf("err = %v, want ErrProtocol", err)
			}
		})
	}
}

// TestDecodePartitionTruncate: the message the partitions' truncate trigger writes becomes the
// truncate event of that partition, in its transaction, and drops the chunk of that
// supplier's open snapshot window but not another supplier's. A message that does not name a
// supplier partition (written by hand) is passed over and listed for the log, never an error
// that would stop replication at it after every restart; one outside a transaction is passed
// over too.
func TestDecodePartitionTruncate(t *testing.T) {
	d := newTestDecoder(t)
	var got []event.Change
	emit := func(c *event.Change) error {
		got = append(got, *c)
		return nil
	}
	decode := func(msg []byte) decoded {
		t.Helper()
		res, err := d.decode(0x16B374D900, msg, emit)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		return res
	}
	low := func(supplier int) []byte {
		return logicalMsg(true, SnapshotLowPrefix, fmt.Sprintf(`{"id":"s%d-1","chunk":1,"supplier":%d,"after":0,"until":200000}`, supplier, supplier))
	}
	chunk := func(supplier int) []byte {
		return logicalMsg(true, SnapshotChunkPrefix, fmt.Sprintf(`{"id":"s%d-1","chunk":1,"schema":"public","table":"products",`+
			`"columns":[{"name":"id","type":20},{"name":"supplier_id","type":23}],"rows":[["7","%d"]]}`, supplier, supplier))
	}
	decode(low(42))
	decode(low(43))
	if res := decode(logicalMsg(true, TruncatePrefix, `{"schema":"public","table":"products_s42"}`)); res.kind != msgChange {
		t.Fatalf("decoded %+v", res)
	}
	want := event.Source{Slot: "tidemark", LSN: 0x16B374D900, CommitLSN: 0x16B374D848, XID: 777, Seq: 0}
	if len(got) != 1 || got[0].Op != event.OpTruncate || got[0].Schema != "public" || got[0].Table != "products_s42" ||
		got[0].Key != (event.Key{}) || got[0].TsMs != 1700000000000 {
		t.Fatalf("emitted %+v", got)
	}
	if src := got[0].Source; src.CommitTS.IsZero() || (func() event.Source { src.CommitTS = time.Time{}; return src })() != want {
		t.Fatalf("source %+v, want %+v", got[0].Source, want)
	}
	// The next change of the transaction comes after it; the truncated supplier's chunk
	// publishes nothing, the other's its row.
	decode(insertMsg())
	decode(chunk(42))
	decode(chunk(43))
	if len(got) != 3 || got[1].Source.Seq != 1 || got[2].Op != event.OpSnapshot || got[2].Key != (event.Key{SupplierID: 43, ID: 7}) {
		t.Fatalf("after the truncate: %+v", got[1:])
	}

	for name, content := range map[string]string{
		"not json":     `{"schema":`,
		"no schema":    `{"table":"products_s42"}`,
		"wrong type":   `{"schema":"public","table":42}`,
		"the root":     `{"schema":"public","table":"products"}`,
		"another name": `{"schema":"public","table":"orders_s1"}`,
	} {
		t.Run(name, func(t *testing.T) {
			d := newTestDecoder(t)
			var emitted int
			res, err := d.decode(1, logicalMsg(true, TruncatePrefix, content), func(*event.Change) error { emitted++; return nil })
			if err != nil || res.kind != msgMessage || emitted != 0 || len(d.passedOver) != 1 {
				t.Errorf("decode: %+v %v, %d emitted, passed over %q", res, err, emitted, d.passedOver)
			}
		})
	}

	got = nil
	res, err := newTestDecoder(t).decode(1, logicalMsg(false, TruncatePrefix, `{"schema":"public","table":"products_s42"}`), emit)
	if err != nil || res.kind != msgMessage || len(got) != 0 {
		t.Fatalf("non-transactional message: %v %v, emitted %+v", res, err, got)
	}
}

// More pgoutput messages for the fuzz seeds.

func commitMsg() []byte {
	b := []byte{'C', 0}
	b = binary.BigEndian.AppendUint64(b, 0x16B374D848)
	b = binary.BigEndian.AppendUint64(b, 0x16B374D880)
	return binary.BigEndian.AppendUint64(b, 700000000000000)
}

func updateMsg(old bool) []byte {
	b := []byte{'U'}
	b = binary.BigEndian.AppendUint32(b, 16400)
	if old {
		b = append(b, 'K')
		b = append(b, tupleData("123456", "41", "\x00null", "\x00null", "\x00null", "\x00null", "\x00null", "\x00null", "\x00null", "\x00null")...)
	}
	b = append(b, 'N')
	row := append([]string(nil), productRow...)
	row[4] = "\x00toast"
	return append(b, tupleData(row...)...)
}

func deleteMsg() []byte {
	b := []byte{'D'}
	b = binary.BigEndian.AppendUint32(b, 16400)
	b = append(b, 'K')
	return append(b, tupleData("123456", "42", "\x00null", "\x00null", "\x00null", "\x00null", "\x00null", "\x00null", "\x00null", "\x00null")...)
}

func truncateMsg() []byte {
	b := []byte{'T'}
	b = binary.BigEndian.AppendUint32(b, 1)
	b = append(b, 0)
	return binary.BigEndian.AppendUint32(b, 16400)
}

func logicalMsg(transactional bool, prefix, content string) []byte {
	b := []byte{'M', 0}
	if transactional {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint64(b, 0x16B374D900)
	b = append(b, prefix...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(content)))
	return append(b, content...)
}

// FuzzDecode feeds one or two (second not empty) pgoutput messages to a decoder that knows products and is inside a
// transaction. Whatever they hold, decoding never panics, every error is ErrProtocol, and
// every change emitted encodes as valid JSON in both envelopes, which decode back to the same
// change.
func FuzzDecode(f *testing.F) {
	low := `{"id":"s1-1","chunk":1,"supplier":42,"after":0,"until":200000}`
	chunk := `{"id":"s1-1","chunk":1,"schema":"public","table":"products","columns":[{"name":"id","type":20},{"name":"supplier_id","type":23},{"name":"name","type":25}],"rows":[["123456","42","Lamp"],["7","42",null]]}`
	typeMsg := append(binary.BigEndian.AppendUint32([]byte{'Y'}, 16500), "public\x00mood\x00"...)
	originMsg := append(binary.BigEndian.AppendUint64([]byte{'O'}, 0x16B374D000), "upstream\x00"...)
	for _, seed := range [][2][]byte{
		{insertMsg(), nil}, {relationMsg(), insertMsg()}, {beginMsg(), insertMsg()},
		{updateMsg(false), nil}, {updateMsg(true), commitMsg()}, {deleteMsg(), nil}, {truncateMsg(), nil},
		{commitMsg(), beginMsg()}, {typeMsg, originMsg},
		{logicalMsg(false, "tidemark_heartbeat", ""), nil},
		{logicalMsg(true, SnapshotLowPrefix, low), logicalMsg(true, SnapshotChunkPrefix, chunk)},
		{logicalMsg(true, SnapshotChunkPrefix, chunk), nil},
		{logicalMsg(true, SnapshotLowPrefix, "{"), nil},
		{logicalMsg(true, TruncatePrefix, `{"schema":"public","table":"products_s42"}`), insertMsg()},
		{logicalMsg(true, TruncatePrefix, `{"table":"products_s42"}`), nil},
		// Bad lengths: a cut insert, a tuple claiming more bytes than it holds, a truncate of
		// more relations than it lists, a logical message longer than its content.
		{insertMsg()[:20], nil},
		{append([]byte{'I', 0, 0, 0x40, 0x10, 'N', 0, 1, 't', 0x7f, 0xff, 0xff, 0xff}, 'x'), nil},
		{[]byte{'T', 0, 0, 0, 3, 0, 0, 0, 0x40, 0x10}, nil},
		{logicalMsg(true, "p", "xy")[:20], nil},
		{relationMsg()[:30], insertMsg()},
		{{}, nil}, {[]byte("Z"), nil},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		d := newTestDecoder(t)
		emit := func(c *event.Change) error {
			checkEnvelopes(t, c)
			return nil
		}
		for i, msg := range [][]byte{first, second} {
			if i > 0 && len(msg) == 0 {
				break
			}
			if _, err := d.decode(1, msg, emit); err != nil {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("decode %q: %v, want ErrProtocol", msg, err)
				}
				return
			}
		}
	})
}

// checkEnvelopes checks that c encodes as valid JSON in both envelopes and that both decode
// back to c.
func checkEnvelopes(t *testing.T, c *event.Change) {
	t.Helper()
	native, deb := c.AppendJSON(nil), c.AppendDebezium(nil)
	if !json.Valid(native) {
		t.Fatalf("invalid JSON %s", native)
	}
	if !json.Valid(deb) {
		t.Fatalf("invalid Debezium JSON %s", deb)
	}
	fromNative, nerr := event.Decode(native)
	fromDeb, derr := event.Decode(deb)
	if (nerr == nil) != (derr == nil) {
		t.Fatalf("the envelopes decode differently: %v / %v\n%s\n%s", nerr, derr, native, deb)
	}
	if nerr != nil {
		if _, ok := c.After.Key(); ok || c.Op == event.OpTruncate {
			t.Fatalf("decode %s: %v", native, nerr)
		}
		return // a row without its key is no event; only products reach the publisher
	}
	if again := fromNative.AppendJSON(nil); !bytes.Equal(again, native) {
		t.Fatalf("decoded and encoded again:\n%s\nwant\n%s", again, native)
	}
	fromDeb.Source.CommitTS = c.Source.CommitTS // Debezium's is to the millisecond
	if again := fromDeb.AppendJSON(nil); !bytes.Equal(again, native) {
		t.Fatalf("the Debezium envelope decodes to\n%s\nwant\n%s", again, native)
	}
}

func TestAppendTimestamptz(t *testing.T) {
	for in, want := range map[string]string{
		"2024-05-01 12:00:00+00":        `"2024-05-01T12:00:00Z"`,
		"2024-05-01 12:00:00.5+00":      `"2024-05-01T12:00:00.5Z"`,
		"2024-05-01 12:00:00.123456+02": `"2024-05-01T10:00:00.123456Z"`,
		"2024-05-01 12:00:00+05:30":     `"2024-05-01T06:30:00Z"`,
		"infinity":                      `"infinity"`,
		"0044-03-15 12:00:00+00 BC":     `"0044-03-15 12:00:00+00 BC"`,
	} {
		if got := string(appendTimestamptz(nil, []byte(in))); got != want {
			t.Errorf("%s → %s, want %s", in, got, want)
		}
	}
}

// BenchmarkDecodeInsert decodes an insert into a change, and then also into its event JSON
// as the publisher sends it.
func BenchmarkDecodeInsert(b *testing.B) {
	msg := insertMsg()
	var buf []byte
	for _, bc := range []struct {
		name string
		emit func(*event.Change) error
	}{
		{"change", func(*event.Change) error { return nil }},
		{"json", func(c *event.Change) error { buf = c.AppendJSON(buf[:0]); return nil }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := newTestDecoder(b)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.decode(1, msg, bc.emit); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEventJSON(b *testing.B) {
	d := newTestDecoder(b)
	var c event.Change
	if _, err := d.decode(1, insertMsg(), func(ch *event.Change) error { c = *ch; return nil }); err != nil {
		b.Fatal(err)
	}
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = c.AppendJSON(buf[:0])
		}
	})
	b.Run("AppendDebezium", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = c.AppendDebezium(buf[:0])
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
