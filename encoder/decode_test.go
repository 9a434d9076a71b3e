package encoder

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tidemark/tidemark/event"
)

func TestDecodeChange(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"insert", `{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"name":"x"},"source":{"commit_lsn":"0/16B3748","seq":3}}`, true},
		{"delete", `{"op":"delete","key":{"supplier_id":1,"id":2},"source":{"commit_lsn":"0/1"}}`, true},
		{"truncate", `{"op":"truncate","table":"products","source":{"commit_lsn":"0/1"}}`, true},
		{"toast name", `{"op":"update","key":{"supplier_id":1,"id":2},"after":{"sku":"a"},"unchanged_toast":["name"],"source":{"commit_lsn":"0/1"}}`, true},
		{"not json", `{`, false},
		{"no key", `{"op":"insert","after":{"name":"x"},"source":{"commit_lsn":"0/1"}}`, false},
		{"zero id", `{"op":"delete","key":{"supplier_id":1,"id":0},"source":{"commit_lsn":"0/1"}}`, false},
		{"supplier beyond int4", `{"op":"delete","key":{"supplier_id":4294967296,"id":1},"source":{"commit_lsn":"0/1"}}`, false},
		{"no after", `{"op":"update","key":{"supplier_id":1,"id":2},"source":{"commit_lsn":"0/1"}}`, false},
		{"no name", `{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"sku":"a"},"source":{"commit_lsn":"0/1"}}`, false},
		{"unknown op", `{"op":"merge","key":{"supplier_id":1,"id":2},"source":{"commit_lsn":"0/1"}}`, false},
		{"bad lsn", `{"op":"delete","key":{"supplier_id":1,"id":2},"source":{"commit_lsn":"nope"}}`, false},
		{"no lsn", `{"op":"delete","key":{"supplier_id":1,"id":2},"source":{}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := decodeChange([]byte(tc.in))
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrPoison) {
				t.Fatalf("error %v does not wrap ErrPoison", err)
			}
			if tc.name == "insert" && (ch.Key.ID != 2 || ch.Source.CommitLSN != 0x16B3748 || ch.Source.Seq != 3) {
				t.Fatalf("decoded %+v", ch)
			}
		})
	}
}

func FuzzDecodeChange(f *testing.F) {
	f.Add([]byte(`{"op":"insert","key":{"supplier_id":1,"id":2},"after":{"name":"x","description":null,"attributes":{"tags":["a"]}},"source":{"commit_lsn":"0/16B3748","seq":3}}`))
	f.Add([]byte(`{"op":"update","key":{"supplier_id":1,"id":2},"before":{"supplier_id":3,"id":2},"after":{"name":"x"},"unchanged_toast":["description"],"source":{"commit_lsn":"1/0"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ch, err := decodeChange(data)
		if err != nil {
			return
		}
		if ch.Source.CommitLSN == 0 {
			t.Fatal("accepted an event without a commit LSN")
		}
		if ch.Op != "truncate" && (ch.Key.SupplierID <= 0 || ch.Key.ID <= 0) {
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

// BenchmarkDecode decodes the event the encoder receives most: an update of a realistic row.
func BenchmarkDecode(b *testing.B) {
	data := benchChange.AppendJSON(nil)
	b.Run("native", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeChange(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecodeAndText(b *testing.B) {
	data := benchChange.AppendJSON(nil)
	b.ReportAllocs()
	for b.Loop() {
		ch, err := decodeChange(data)
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
