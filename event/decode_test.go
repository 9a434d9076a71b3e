package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/event"
)

// sameChange reports how a and b differ, or "" when they are the same change. Times compare
// with Equal (a decoded time is in UTC).
func sameChange(a, b event.Change) string {
	if !a.Source.CommitTS.Equal(b.Source.CommitTS) {
		return "commit_ts " + a.Source.CommitTS.String() + " != " + b.Source.CommitTS.String()
	}
	a.Source.CommitTS, b.Source.CommitTS = time.Time{}, time.Time{}
	if !reflect.DeepEqual(a, b) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		return string(ja) + "\n!=\n" + string(jb)
	}
	return ""
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestDecodeGolden: every golden event decodes, encodes back to the same bytes in its own
// envelope, and both envelopes of one change decode to the same Change. (The golden files are
// indented to be read; on the wire an event is compact.)
func TestDecodeGolden(t *testing.T) {
	native := goldenFiles(t, false)
	debezium := goldenFiles(t, true)
	for name, data := range native {
		t.Run(name, func(t *testing.T) {
			data := compact(t, data)
			nc, err := event.Decode(data)
			if err != nil {
				t.Fatalf("native: %v", err)
			}
			if got := nc.AppendJSON(nil); !bytes.Equal(got, data) {
				t.Errorf("native re-encoded:\n%s\nwant\n%s", got, data)
			}
			ddata, ok := debezium["debezium_"+name]
			if !ok {
				t.Fatalf("no debezium_%s.json", name)
			}
			ddata = compact(t, ddata)
			dc, err := event.Decode(ddata)
			if err != nil {
				t.Fatalf("debezium: %v", err)
			}
			if got, want := dc.AppendDebezium(nil), ddata; !bytes.Equal(got, want) {
				t.Errorf("debezium re-encoded:\n%s\nwant\n%s", got, want)
			}
			// The golden files blank commit_ts and source.ts_ms differently (2000-01-01 and 0).
			dc.Source.CommitTS = nc.Source.CommitTS
			if diff := sameChange(nc, dc); diff != "" {
				t.Errorf("the envelopes decode differently:\n%s", diff)
			}
		})
	}
	if len(debezium) != len(native) {
		t.Errorf("%d debezium golden files for %d native ones", len(debezium), len(native))
	}
}

func TestDecodeGoldenUnchangedToast(t *testing.T) {
	for _, name := range []string{"update_unchanged_toast", "debezium_update_unchanged_toast"} {
		c, err := event.Decode(compact(t, goldenFiles(t, strings.HasPrefix(name, "debezium_"))[name]))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c.UnchangedToast, []string{"description"}) {
			t.Errorf("%s: unchanged_toast %q", name, c.UnchangedToast)
		}
		if v, ok := c.After.Get("description"); ok {
			t.Errorf("%s: after carries description %s", name, v)
		}
		if c.Key != (event.Key{SupplierID: 1, ID: 1}) || c.Op != event.OpUpdate {
			t.Errorf("%s: %s %+v", name, c.Op, c.Key)
		}
	}
}

// changes are what the publisher writes, with every field set as replicate sets it.
func changes() map[string]event.Change {
	ts := time.Date(2026, 3, 14, 9, 26, 53, 612345678, time.FixedZone("CET", 3600))
	src := event.Source{Slot: "tidemark", LSN: 0x16B374D000, CommitLSN: 0x16B374D848, XID: 777, CommitTS: ts, Seq: 3}
	row := event.Row{
		{Name: "id", Value: json.RawMessage(`123456`)},
		{Name: "supplier_id", Value: json.RawMessage(`42`)},
		{Name: "sku", Value: json.RawMessage(`"NRD-OAK-T160"`)},
		{Name: "name", Value: json.RawMessage(`"Nordby \"oak\" table\n\u2013 two lines"`)},
		{Name: "description", Value: json.RawMessage(`"Designed in Malmö <made> & oiled"`)},
		{Name: "price", Value: json.RawMessage(`"849.00"`)},
		{Name: "currency", Value: json.RawMessage(`null`)},
		{Name: "attributes", Value: json.RawMessage(`{"tags": ["dining", "oak"], "w": 1.5e2}`)},
	}
	oldKey := event.Row{{Name: "id", Value: json.RawMessage(`123456`)}, {Name: "supplier_id", Value: json.RawMessage(`41`)}}
	key := event.Key{SupplierID: 42, ID: 123456}
	base := event.Change{Schema: "public", Table: "products", Key: key, Source: src, TsMs: 1773480413640}
	with := func(f func(*event.Change)) event.Change {
		c := base
		f(&c)
		return c
	}
	return map[string]event.Change{
		"insert":   with(func(c *event.Change) { c.Op, c.After = event.OpInsert, row }),
		"snapshot": with(func(c *event.Change) { c.Op, c.After = event.OpSnapshot, row }),
		"update toast": with(func(c *event.Change) {
			c.Op, c.After, c.UnchangedToast = event.OpUpdate, row[:4], []string{"description", "attributes"}
		}),
		"update moved key": with(func(c *event.Change) { c.Op, c.After, c.Before = event.OpUpdate, row, oldKey }),
		"delete": with(func(c *event.Change) {
			c.Op, c.Before, c.Key = event.OpDelete, oldKey, event.Key{SupplierID: 41, ID: 123456}
		}),
		"truncate":    with(func(c *event.Change) { c.Op, c.Key, c.Table = event.OpTruncate, event.Key{}, "products_s42" }),
		"empty after": with(func(c *event.Change) { c.Op, c.After, c.Key = event.OpInsert, event.Row{}, event.Key{} }),
		"zero source": with(func(c *event.Change) { c.Op, c.After, c.Source = event.OpInsert, row, event.Source{CommitLSN: 1} }),
		"large numbers": with(func(c *event.Change) {
			c.Op, c.After, c.Source.LSN, c.Source.XID = event.OpInsert, row, ^event.LSN(0), ^uint32(0)
		}),
		"epoch open": with(func(c *event.Change) {
			c.Op, c.Key, c.Epoch = event.OpEpochOpen, event.Key{SupplierID: 42}, &event.Epoch{ID: `s42-"1"`, SupplierID: 42, OpenLSN: 0x16B374D000}
		}),
		"epoch close": with(func(c *event.Change) {
			c.Op, c.Key, c.Epoch = event.OpEpochClose, event.Key{SupplierID: 42}, &event.Epoch{ID: "s42-1", SupplierID: 42, OpenLSN: 0x16B374D000, Rows: 1 << 40}
		}),
	}
}

// TestDecodeWhatThePublisherWrites: a Change encoded in either envelope decodes back to it
// (Debezium's to the millisecond of its commit time).
func TestDecodeWhatThePublisherWrites(t *testing.T) {
	var d event.Decoder
	for name, c := range changes() {
		t.Run(name, func(t *testing.T) {
			got, err := d.Decode(c.AppendJSON(nil))
			if err != nil {
				t.Fatalf("native: %v\n%s", err, c.AppendJSON(nil))
			}
			if diff := sameChange(got, c); diff != "" {
				t.Errorf("native:\n%s", diff)
			}
			got, err = d.Decode(c.AppendDebezium(nil))
			if err != nil {
				t.Fatalf("debezium: %v\n%s", err, c.AppendDebezium(nil))
			}
			want := c
			want.Source.CommitTS = c.Source.CommitTS.Truncate(time.Millisecond)
			if c.Op != event.OpEpochOpen && c.Op != event.OpEpochClose && (c.Op == event.OpTruncate || c.Key == (event.Key{})) {
				// No key in Debezium's envelope but the row's.
				want.Key, _ = c.After.Key()
			}
			if diff := sameChange(got, want); diff != "" {
				t.Errorf("debezium:\n%s", diff)
			}
			// encoding/json goes through the same code.
			var viaJSON event.Change
			if err := json.Unmarshal(c.AppendDebezium(nil), &viaJSON); err != nil {
				t.Fatal(err)
			}
			if diff := sameChange(viaJSON, want); diff != "" {
				t.Errorf("json.Unmarshal:\n%s", diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	const src = `"source":{"slot":"s","lsn":"0/1","commit_lsn":"0/2","xid":1,"commit_ts":"2024-01-01T00:00:00Z","seq":0}`
	const dsrc = `"source":{"name":"s","ts_ms":1,"schema":"public","table":"products","txId":1,"lsn":1,"commit_lsn":"0/2","seq":0}`
	for _, tc := range []struct {
		name, in string
		want     error
		says     string
	}{
		{"empty", ``, event.ErrMalformed, "found the end of the data"},
		{"not an object", `[1]`, event.ErrMalformed, "want a JSON object"},
		{"truncated", `{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"name":"x`, event.ErrMalformed, "unterminated string"},
		{"trailing data", `{"op":"truncate",` + src + `} {}`, event.ErrMalformed, "data after the event"},
		{"trailing NUL", "{\"op\":\"truncate\"," + src + "}\x00", event.ErrMalformed, "data after the event"},
		{"trailing comma", `{"op":"truncate",` + src + `,}`, event.ErrMalformed, "want a member name"},
		{"bad escape", `{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"name":"\x"},` + src + `}`, event.ErrMalformed, `invalid escape`},
		{"control char", "{\"op\":\"insert\",\"key\":{\"supplier_id\":1,\"id\":2},\"after\":{\"name\":\"a\tb\"}," + src + "}", event.ErrMalformed, "control character"},
		{"bad number", `{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"price":01},` + src + `}`, event.ErrMalformed, "want ',' or '}'"},
		{"bad literal", `{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"ok":tru},` + src + `}`, event.ErrMalformed, "want a JSON value"},
		{"no op", `{"key":{"supplier_id":1,"id":2},` + src + `}`, event.ErrMalformed, "no op"},
		{"op not a string", `{"op":1,` + src + `}`, event.ErrMalformed, "op: want a string, found a number"},
		{"unknown op", `{"op":"merge","key":{"supplier_id":1,"id":2},` + src + `}`, event.ErrUnknownOp, `"merge"`},
		{"unknown debezium op", `{"op":"m",` + dsrc + `}`, event.ErrUnknownOp, `"m"`},
		{"foreign debezium message", `{"op":"m","message":{"prefix":"audit","content":"e30="},` + dsrc + `}`, event.ErrUnknownOp, `prefix "audit"`},
		{"epoch without epoch", `{"op":"epoch_open","key":{"supplier_id":1,"id":0},` + src + `}`, event.ErrMalformed, "epoch_open without an epoch"},
		{"epoch without open_lsn", `{"op":"epoch_close","key":{"supplier_id":1,"id":0},"epoch":{"id":"e","supplier_id":1},` + src + `}`, event.ErrMalformed, "want id, supplier_id and open_lsn"},
		{"epoch with a row", `{"op":"epoch_open","key":{"supplier_id":1,"id":0},"epoch":{"id":"e","supplier_id":1,"open_lsn":"0/1"},"after":{},` + src + `}`, event.ErrMalformed, "with a row image"},
		{"debezium epoch not base64", `{"op":"m","message":{"prefix":"tidemark.epoch.open","content":"{}"},` + dsrc + `}`, event.ErrMalformed, "message.content: want base64"},
		{"debezium epoch without content", `{"op":"m","message":{"prefix":"tidemark.epoch.close"},` + dsrc + `}`, event.ErrMalformed, "epoch_close without an epoch"},
		{"no key", `{"op":"insert","after":{"name":"x"},` + src + `}`, event.ErrMalformed, "insert without a key"},
		{"half a key", `{"op":"delete","key":{"supplier_id":1},` + src + `}`, event.ErrMalformed, "want supplier_id and id"},
		{"key as string", `{"op":"delete","key":{"supplier_id":"1","id":2},` + src + `}`, event.ErrMalformed, "key.supplier_id: want an integer, found a string"},
		{"fractional key", `{"op":"delete","key":{"supplier_id":1.5,"id":2},` + src + `}`, event.ErrMalformed, "want an integer, found 1.5"},
		{"key overflow", `{"op":"delete","key":{"supplier_id":1,"id":9223372036854775808},` + src + `}`, event.ErrMalformed, "out of range"},
		{"no after", `{"op":"update","key":{"supplier_id":1,"id":2},` + src + `}`, event.ErrMalformed, "update without an after image"},
		{"after not an object", `{"op":"insert","key":{"supplier_id":1,"id":2},"after":[1],` + src + `}`, event.ErrMalformed, "after: want an object"},
		{"toast not strings", `{"op":"update","key":{"supplier_id":1,"id":2},"after":{},"unchanged_toast":[1],` + src + `}`, event.ErrMalformed, "unchanged_toast: want a string"},
		{"no source", `{"op":"truncate"}`, event.ErrMalformed, "no source.commit_lsn"},
		{"no commit lsn", `{"op":"truncate","source":{"lsn":"0/1"}}`, event.ErrMalformed, "no source.commit_lsn"},
		{"bad commit lsn", `{"op":"truncate","source":{"commit_lsn":"nope"}}`, event.ErrMalformed, `source.commit_lsn: parse LSN "nope"`},
		{"numeric lsn in native", `{"op":"truncate","source":{"lsn":5,"commit_lsn":"0/1"}}`, event.ErrMalformed, "source.lsn: want an LSN as text"},
		{"text lsn in debezium", `{"op":"t","source":{"lsn":"0/5","commit_lsn":"0/1"}}`, event.ErrMalformed, "want a number in the Debezium envelope"},
		{"negative debezium lsn", `{"op":"t","source":{"lsn":-5,"commit_lsn":"0/1"}}`, event.ErrMalformed, "want a non-negative integer"},
		{"xid beyond uint32", `{"op":"truncate","source":{"xid":4294967296,"commit_lsn":"0/1"}}`, event.ErrMalformed, "source.xid: 4294967296 is out of range"},
		{"negative seq", `{"op":"truncate","source":{"seq":-1,"commit_lsn":"0/1"}}`, event.ErrMalformed, "source.seq"},
		{"bad commit_ts", `{"op":"truncate","source":{"commit_ts":"2024-01-01 00:00:00","commit_lsn":"0/1"}}`, event.ErrMalformed, "source.commit_ts: want an RFC 3339 time"},
		{"debezium delete without before", `{"before":null,"after":null,"op":"d",` + dsrc + `}`, event.ErrMalformed, "delete without a before image"},
		{"debezium create without after", `{"before":null,"after":null,"op":"c",` + dsrc + `}`, event.ErrMalformed, "insert without an after image"},
		{"too deep", `{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"a":` + strings.Repeat("[", 10002) + strings.Repeat("]", 10002) + `},` + src + `}`, event.ErrMalformed, "nested more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := event.Decode([]byte(tc.in))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v (decoded %+v)", err, tc.want, c)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			if tc.want == event.ErrUnknownOp && errors.Is(err, event.ErrMalformed) {
				t.Errorf("an unknown op is not malformed: %v", err)
			}
		})
	}
}

// TestDecodeLenient: what Decode accepts beyond what the publisher writes.
func TestDecodeLenient(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		check    func(event.Change) bool
	}{
		{"unknown fields skipped", `{"future":{"a":[1,{"b":null}]},"op":"delete","key":{"supplier_id":1,"id":2,"x":true},"source":{"commit_lsn":"0/1","db":"x"},"ts_ms":5}`,
			func(c event.Change) bool { return c.Key == event.Key{SupplierID: 1, ID: 2} && c.TsMs == 5 }},
		{"white space", " \n{ \"op\" : \"truncate\" , \"source\" : { \"commit_lsn\" : \"a/b\" } }\n",
			func(c event.Change) bool { return c.Source.CommitLSN == 0xA0000000B }},
		{"escaped op and names", `{"o\u0070":"ins\u0065rt","key":{"supplier_id":1,"id":2},"after":{"n\u00e4me":"\u00e9"},"source":{"commit_lsn":"0\/1"}}`,
			func(c event.Change) bool {
				v, ok := c.After.Get("näme")
				return c.Op == event.OpInsert && ok && string(v) == `"\u00e9"` && c.Source.CommitLSN == 1
			}},
		{"null images", `{"op":"delete","key":{"supplier_id":1,"id":2},"after":null,"before":null,"unchanged_toast":null,"source":{"commit_lsn":"0/1"}}`,
			func(c event.Change) bool { return c.After == nil && c.Before == nil && c.UnchangedToast == nil }},
		{"debezium key from a partial row", `{"after":{"id":8,"supplier_id":null},"op":"c","source":{"commit_lsn":"0/1"}}`,
			func(c event.Change) bool { return c.Key == event.Key{ID: 8} }},
		{"debezium keeps the row's order without placeholders", `{"after":{"a":1,"b":"__debezium_unavailable_value","c":2},"op":"u","source":{"commit_lsn":"0/1","ts_ms":1700000000123}}`,
			func(c event.Change) bool {
				return len(c.After) == 2 && c.After[1].Name == "c" && reflect.DeepEqual(c.UnchangedToast, []string{"b"}) &&
					c.Source.CommitTS.Equal(time.UnixMilli(1700000000123))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := event.Decode([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("decoded %+v", c)
			}
		})
	}
}

// TestDecoderReuse: a Decoder gives the same Changes as Decode, event after event, and
// allocates little for each (the row and the copy of nothing else).
func TestDecoderReuse(t *testing.T) {
	var d event.Decoder
	for range 3 {
		for name, c := range changes() {
			for _, data := range [][]byte{c.AppendJSON(nil), c.AppendDebezium(nil)} {
				a, err := d.Decode(data)
				if err != nil {
					t.Fatal(err)
				}
				b, err := event.Decode(data)
				if err != nil {
					t.Fatal(err)
				}
				if diff := sameChange(a, b); diff != "" {
					t.Fatalf("%s: Decoder and Decode differ:\n%s", name, diff)
				}
			}
		}
	}
	moved := changes()["update moved key"]
	data := moved.AppendJSON(nil)
	// The after and before rows; nothing per column, per string or per field.
	if n := testing.AllocsPerRun(100, func() { _, _ = d.Decode(data) }); n > 2 {
		t.Errorf("Decoder.Decode allocates %v times per event, want at most 2", n)
	}
}

func TestPosition(t *testing.T) {
	ps := []event.Position{{CommitLSN: 1, Seq: 0}, {CommitLSN: 1, Seq: 1}, {CommitLSN: 1, Seq: 10}, {CommitLSN: 0x100000000, Seq: 0}, {CommitLSN: 0x100000001, Seq: 2}}
	for i, p := range ps {
		for j, q := range ps {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := p.Compare(q); got != want {
				t.Errorf("%s.Compare(%s) = %d, want %d", p, q, got, want)
			}
		}
	}
	c := event.Change{Source: event.Source{CommitLSN: 0x16B374D848, Seq: 42, LSN: 7}}
	if p := c.Position(); p != (event.Position{CommitLSN: 0x16B374D848, Seq: 42}) || p.String() != "16/B374D848:42" {
		t.Errorf("Position() = %+v (%s)", p, p)
	}
}

func TestRowKey(t *testing.T) {
	for _, tc := range []struct {
		row event.Row
		key event.Key
		ok  bool
	}{
		{event.Row{{Name: "supplier_id", Value: []byte("42")}, {Name: "id", Value: []byte("-7")}}, event.Key{SupplierID: 42, ID: -7}, true},
		{event.Row{{Name: "id", Value: []byte("9223372036854775807")}, {Name: "supplier_id", Value: []byte("-9223372036854775808")}}, event.Key{SupplierID: -1 << 63, ID: 1<<63 - 1}, true},
		{event.Row{{Name: "id", Value: []byte("9223372036854775808")}, {Name: "supplier_id", Value: []byte("1")}}, event.Key{SupplierID: 1}, false},
		{event.Row{{Name: "id", Value: []byte("8")}, {Name: "supplier_id", Value: []byte("null")}}, event.Key{ID: 8}, false},
		{event.Row{{Name: "id", Value: []byte("08")}, {Name: "supplier_id", Value: []byte("1")}}, event.Key{SupplierID: 1}, false},
		{event.Row{{Name: "id", Value: []byte("1.0")}, {Name: "supplier_id", Value: []byte("1")}}, event.Key{SupplierID: 1}, false},
		{event.Row{{Name: "id", Value: []byte("-")}, {Name: "supplier_id", Value: []byte("1")}}, event.Key{SupplierID: 1}, false},
		{nil, event.Key{}, false},
	} {
		if k, ok := tc.row.Key(); k != tc.key || ok != tc.ok {
			j, _ := json.Marshal(tc.row)
			t.Errorf("%s.Key() = %+v, %v; want %+v, %v", j, k, ok, tc.key, tc.ok)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, debezium := range []bool{false, true} {
		for _, data := range goldenFiles(f, debezium) {
			var b bytes.Buffer
			_ = json.Compact(&b, data)
			f.Add(b.Bytes())
		}
	}
	for _, c := range changes() {
		f.Add(c.AppendJSON(nil))
		f.Add(c.AppendDebezium(nil))
	}
	f.Add([]byte(`{"op":"update","key":{"supplier_id":1,"id":2},"after":{"n\u00e4me":"\ud83d\ude00"},"unchanged_toast":["x"],"source":{"commit_lsn":"0/1","commit_ts":"0000-01-01T00:00:00+01:00"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := event.Decode(data)
		if err != nil {
			if !errors.Is(err, event.ErrMalformed) && !errors.Is(err, event.ErrUnknownOp) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrUnknownOp", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("decoded invalid JSON %q", data)
		}
		for _, r := range []event.Row{c.After, c.Before} {
			for _, col := range r {
				if !json.Valid(col.Value) {
					t.Fatalf("column %q holds invalid JSON %q", col.Name, col.Value)
				}
			}
		}
		// What the publisher writes for it reads back the same.
		back, err := event.Decode(c.AppendJSON(nil))
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v\n%s", err, c.AppendJSON(nil))
		}
		if diff := sameChange(back, c); diff != "" {
			t.Fatalf("re-encoded event decodes differently:\n%s", diff)
		}
	})
}

// FuzzDecodeValue: any JSON value encoding/json accepts is a column value Decode accepts.
func FuzzDecodeValue(f *testing.F) {
	for _, v := range []string{`1`, `-0.5e+3`, `"a\u00e9\n"`, `{"a":[true,false,null,{}]}`, `[]`, ` "x" `} {
		f.Add([]byte(v))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		if !json.Valid(value) {
			return
		}
		data := append([]byte(`{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"v":`), value...)
		data = append(data, `},"source":{"commit_lsn":"0/1"}}`...)
		c, err := event.Decode(data)
		if err != nil {
			t.Fatalf("%v\n%s", err, data)
		}
		if got, _ := c.After.Get("v"); !bytes.Equal(got, bytes.TrimSpace(value)) {
			t.Fatalf("value %q read as %q", value, got)
		}
	})
}
