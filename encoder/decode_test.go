package encoder

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/event"
)

func TestDecodeChange(t *testing.T) {
	var dec event.Decoder
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"insert", `{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"name":"x"},"source":{"commit_lsn":"0/16B3748","seq":3}}`, true},
		{"delete", `{"op":"delete","key":{"supplier_id":1,"id":2},"source":{"commit_lsn":"0/1"}}`, true},
		{"truncate", `{"op":"truncate","table":"products","source":{"commit_lsn":"0/1"}}`, true},
		{"toast name", `{"op":"update","key":{"supplier_id":1,"id":2},"after":{"sku":"a"},"unchanged_toast":["name"],"source":{"commit_lsn":"0/1"}}`, true},
		{"debezium create", `{"before":null,"after":{"id":2,"supplier_id":1,"name":"x"},"source":{"lsn":23803720,"commit_lsn":"0/16B3748","seq":3},"op":"c","ts_ms":1}`, true},
		{"debezium toast name", `{"before":null,"after":{"id":2,"supplier_id":1,"name":"__debezium_unavailable_value"},"source":{"commit_lsn":"0/1"},"op":"u"}`, true},
		{"debezium delete", `{"before":{"id":2,"supplier_id":1},"after":null,"source":{"commit_lsn":"0/1"},"op":"d"}`, true},
		{"debezium truncate", `{"before":null,"after":null,"source":{"table":"products_s3","commit_lsn":"0/1"},"op":"t"}`, true},
		{"not json", `{`, false},
		{"no key", `{"op":"insert","after":{"name":"x"},"source":{"commit_lsn":"0/1"}}`, false},
		{"zero id", `{"op":"delete","key":{"supplier_id":1,"id":0},"source":{"commit_lsn":"0/1"}}`, false},
		{"supplier beyond int4", `{"op":"delete","key":{"supplier_id":4294967296,"id":1},"source":{"commit_lsn":"0/1"}}`, false},
		{"no after", `{"op":"update","key":{"supplier_id":1,"id":2},"source":{"commit_lsn":"0/1"}}`, false},
		{"no name", `{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"sku":"a"},"source":{"commit_lsn":"0/1"}}`, false},
		{"unknown op", `{"op":"merge","key":{"supplier_id":1,"id":2},"source":{"commit_lsn":"0/1"}}`, false},
		{"bad lsn", `{"op":"delete","key":{"supplier_id":1,"id":2},"source":{"commit_lsn":"nope"}}`, false},
		{"no lsn", `{"op":"delete","key":{"supplier_id":1,"id":2},"source":{}}`, false},
		{"zero lsn", `{"op":"delete","key":{"supplier_id":1,"id":2},"source":{"commit_lsn":"0/0"}}`, false},
		{"debezium no key columns", `{"after":{"name":"x"},"source":{"commit_lsn":"0/1"},"op":"c"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := decodeChange(&dec, []byte(tc.in))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrPoison) {
				t.Fatalf("error %v does not wrap ErrPoison", err)
			}
			if strings.HasSuffix(tc.name, "create") || tc.name == "insert" {
				if ch.Key != (event.Key{SupplierID: 1, ID: 2}) || ch.Source.CommitLSN != 0x16B3748 || ch.Source.Seq != 3 || string(ch.text.name) != `"x"` {
					t.Fatalf("decoded %+v", ch)
				}
			}
			if strings.HasSuffix(tc.name, "toast name") && (ch.text.name != nil || !toastNeeded(ch.UnchangedToast)) {
				t.Fatalf("the unchanged name is not read from the table: %+v", ch)
			}
		})
	}
}

// TestDecodeGoldenEvents is the contract between the publisher and the encoder: every golden
// event, in both envelopes, reaches the encoder as the Change the event package decodes, and
// each product event is one the encoder applies.
func TestDecodeGoldenEvents(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "event", "testdata", "golden", "*.json"))
	if err != nil || len(paths) < 16 {
		t.Fatalf("golden files: %v %v", paths, err)
	}
	var dec event.Decoder
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			indented, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := json.Compact(&b, indented); err != nil {
				t.Fatal(err)
			}
			// The golden files blank the commit LSN; a published event always has one.
			data := bytes.ReplaceAll(b.Bytes(), []byte(`"commit_lsn":"0/0"`), []byte(`"commit_lsn":"16/B374D848"`))
			want, err := event.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			ch, err := decodeChange(&dec, data)
			if strings.Contains(name, "kinds") {
				// Another table's rows: no product name, so never a product's vector.
				if !errors.Is(err, ErrPoison) {
					t.Fatalf("kinds event: err = %v, want ErrPoison", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("the encoder rejects a golden event: %v\n%s", err, data)
			}
			if !reflect.DeepEqual(ch.Change, want) {
				t.Errorf("the encoder decoded\n%+v\nwant\n%+v", ch.Change, want)
			}
			for col, got := range map[string]json.RawMessage{"sku": ch.text.sku, "name": ch.text.name, "description": ch.text.description, "attributes": ch.text.attributes} {
				if v, _ := want.After.Get(col); !bytes.Equal(got, v) {
					t.Errorf("%s = %s, want %s", col, got, v)
				}
			}
			if ch.Source.CommitLSN != 0x16B374D848 {
				t.Errorf("commit LSN %s", ch.Source.CommitLSN)
			}
		})
	}
}

func FuzzDecodeChange(f *testing.F) {
	f.Add([]byte(`{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"name":"x","description":null,"attributes":{"tags":["a"]}},"source":{"commit_lsn":"0/16B3748","seq":3}}`))
	f.Add([]byte(`{"op":"update","key":{"supplier_id":1,"id":2},"before":{"supplier_id":3,"id":2},"after":{"name":"x"},"unchanged_toast":["description"],"source":{"commit_lsn":"1/0"}}`))
	f.Add(benchChange.AppendDebezium(nil))
	var dec event.Decoder
	f.Fuzz(func(t *testing.T, data []byte) {
		ch, err := decodeChange(&dec, data)
		if err != nil {
			if !errors.Is(err, ErrPoison) {
				t.Fatalf("error %v does not wrap ErrPoison", err)
			}
			return
		}
		if ch.Source.CommitLSN == 0 {
			t.Fatal("accepted an event without a commit LSN")
		}
		if ch.Op != event.OpTruncate && !validKey(ch.Key) {
			t.Fatal("accepted an event without a key")
		}
		if ch.After != nil {
			pt := productText{}
			if fillText(&pt, &ch) == nil {
				_ = Text(pt.name, pt.description, pt.attributes)
			}
		}
	})
}

func TestRetryAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"":      0,
		"2":     2 * time.Second,
		"0.5":   500 * time.Millisecond,
		"-1":    0,
		"junk":  0,
		"99999": 5 * time.Minute,
	} {
		if got := retryAfter(in); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
	if got := retryAfter(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)); got != 5*time.Minute {
		t.Errorf("HTTP date an hour ahead: %v", got)
	}
}

// benchChange is a supplier's row as replicate publishes it: a realistic name, description
// and attributes (the row image is about 560 bytes).
var benchChange = event.Change{
	Op: event.OpUpdate, Schema: "public", Table: "products", Key: event.Key{SupplierID: 42, ID: 1183907},
	After: event.Row{
		{Name: "id", Value: json.RawMessage(`1183907`)},
		{Name: "supplier_id", Value: json.RawMessage(`42`)},
		{Name: "sku", Value: json.RawMessage(`"NRD-OAK-T160-NAT"`)},
		{Name: "name", Value: json.RawMessage(`"Nordby extendable oak table"`)},
		{Name: "description", Value: json.RawMessage(`"Solid European oak with a natural oiled finish; seats six, or eight with the hidden leaf (160–220 cm). Rounded edges, tapered legs and felt pads protect your floor. Assembly takes about 20 minutes – tools included. Wipe with a damp cloth and re-oil once a year. Designed in Malmö, made in Poland from FSC® certified wood."`)},
		{Name: "price", Value: json.RawMessage(`"849.00"`)},
		{Name: "currency", Value: json.RawMessage(`"EUR"`)},
		{Name: "status", Value: json.RawMessage(`"active"`)},
		{Name: "attributes", Value: json.RawMessage(`{"brand": "Nordby", "color": "natural oak", "material": "oak", "width_cm": 160, "tags": ["dining", "extendable"]}`)},
		{Name: "updated_at", Value: json.RawMessage(`"2026-03-14T09:26:53.589793Z"`)},
	},
	Source: event.Source{Slot: "tidemark", LSN: 0x3A7F2C18, CommitLSN: 0x3A7F2D40, XID: 948211,
		CommitTS: time.Date(2026, 3, 14, 9, 26, 53, 612345000, time.UTC), Seq: 17},
	TsMs: 1773480413640,
}

// BenchmarkDecode decodes the event the encoder receives most, an update of a realistic row,
// in each envelope, as a batch does: one Decoder for many events.
func BenchmarkDecode(b *testing.B) {
	for _, env := range []struct {
		name string
		data []byte
	}{
		{"native", benchChange.AppendJSON(nil)},
		{"debezium", benchChange.AppendDebezium(nil)},
	} {
		b.Run(env.name, func(b *testing.B) {
			var dec event.Decoder
			b.SetBytes(int64(len(env.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeChange(&dec, env.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeAndText(b *testing.B) {
	data := benchChange.AppendJSON(nil)
	var dec event.Decoder
	b.ReportAllocs()
	for b.Loop() {
		ch, err := decodeChange(&dec, data)
		if err != nil {
			b.Fatal(err)
		}
		var pt productText
		if err := fillText(&pt, &ch); err != nil {
			b.Fatal(err)
		}
		_ = ContentHash("hash-v1-384", Text(pt.name, pt.description, pt.attributes))
	}
}
