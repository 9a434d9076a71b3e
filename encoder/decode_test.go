package encoder

import (
	"errors"
	"net/http"
	"testing"
	"time"
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

var benchEvent = []byte(`{"op":"insert","schema":"public","table":"products","key":{"supplier_id":3,"id":123456},"after":{"id":123456,"supplier_id":3,"sku":"SKU-123456","name":"Product 123456 oak table","description":"A fine item, number 123456, made with care and shipped in recycled packaging.","price":"456.99","currency":"EUR","status":"pending","attributes":{"brand": "Brand 6", "category": "Category 16", "weight_g": 156},"updated_at":"2026-11-24T21:55:19.123456Z"},"source":{"slot":"tidemark","lsn":"0/16B3748","commit_lsn":"0/16B3748","xid":1234,"commit_ts":"2026-11-24T21:55:19.123456Z","seq":0},"ts_ms":1795000000000}`)

func BenchmarkDecodeAndText(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ch, err := decodeChange(benchEvent)
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
