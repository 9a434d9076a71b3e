package loader_test

import (
	"strings"
	"testing"

	"github.com/tidemark/tidemark/loader"
)

func rec(kv ...string) *loader.Record {
	r := &loader.Record{Line: 2}
	for i := 0; i < len(kv); i += 2 {
		for c, name := range loader.Columns {
			if name == kv[i] {
				r.Fields[c] = kv[i+1]
			}
		}
	}
	return r
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("é", 100) // 100 characters, 200 bytes: fits varchar(100)
	for _, tc := range []struct {
		name   string
		rec    *loader.Record
		reason string // "" = valid
		check  func(loader.Row) bool
	}{
		{"minimal", rec("sku", "A", "name", "N"), "", func(r loader.Row) bool {
			return r.Description == nil && r.Price == nil && r.Currency == nil && r.Status == "" && r.Attributes == "{}"
		}},
		{"everything", rec("sku", "A", "name", "N", "description", "d", "price", "12.50", "currency", "eur", "status", "active", "attributes", `{"a":1}`), "", func(r loader.Row) bool {
			return *r.Description == "d" && *r.Price == "12.50" && *r.Currency == "EUR" && r.Status == "active" && r.Attributes == `{"a": 1}`
		}},
		{"sku of 100 characters", rec("sku", long, "name", "N"), "", nil},
		{"empty sku", rec("name", "N"), "sku: empty", nil},
		{"sku over 100", rec("sku", long+"x", "name", "N"), "sku: longer than 100 characters", nil},
		{"missing name", rec("sku", "A"), "name: missing", nil},
		{"price integer", rec("sku", "A", "name", "N", "price", "12"), "", func(r loader.Row) bool { return *r.Price == "12" }},
		{"price zero", rec("sku", "A", "name", "N", "price", "0.00"), "", nil},
		{"price trailing zeros", rec("sku", "A", "name", "N", "price", "1.500"), "", nil},
		{"price max", rec("sku", "A", "name", "N", "price", "9999999999.99"), "", nil},
		{"price not a number", rec("sku", "A", "name", "N", "price", "abc"), `price: not a decimal number ("abc")`, nil},
		{"price comma", rec("sku", "A", "name", "N", "price", "1,50"), `price: not a decimal number ("1,50"); a decimal comma? set decimal: "," in the profile or give --decimal ,`, nil},
		{"price exponent", rec("sku", "A", "name", "N", "price", "1e3"), `price: not a decimal number ("1e3")`, nil},
		{"price space", rec("sku", "A", "name", "N", "price", " 1"), `price: not a decimal number (" 1")`, nil},
		{"price point only", rec("sku", "A", "name", "N", "price", "."), `price: not a decimal number (".")`, nil},
		{"price negative", rec("sku", "A", "name", "N", "price", "-1.00"), `price: negative ("-1.00")`, nil},
		{"price 3 decimals", rec("sku", "A", "name", "N", "price", "1.005"), `price: more than 2 decimals ("1.005")`, nil},
		{"price too big", rec("sku", "A", "name", "N", "price", "10000000000"), `price: over 9999999999.99 ("10000000000")`, nil},
		{"currency 2 letters", rec("sku", "A", "name", "N", "currency", "EU"), `currency: not 3 letters ("EU")`, nil},
		{"currency digits", rec("sku", "A", "name", "N", "currency", "E1R"), `currency: not 3 letters ("E1R")`, nil},
		{"attributes array", rec("sku", "A", "name", "N", "attributes", "[1]"), "attributes: not a JSON object", nil},
		{"attributes broken", rec("sku", "A", "name", "N", "attributes", "{"), "attributes: not a JSON object", nil},
		{"attributes NUL", rec("sku", "A", "name", "N", "attributes", `{"a":"\u0000"}`), `attributes: contains \u0000, which jsonb cannot store`, nil},
		{"attributes lone surrogate", rec("sku", "A", "name", "N", "attributes", `{"a":"\ud800x"}`), "attributes: contains an unpaired UTF-16 surrogate escape", nil},
		{"attributes surrogate pair", rec("sku", "A", "name", "N", "attributes", `{"a":"\ud83d\ude00"}`), "", nil},
		// Not JSON, though the canonical rendering could be tempted to copy them.
		{"attributes leading zero", rec("sku", "A", "name", "N", "attributes", `{"a":01}`), "attributes: not a JSON object", nil},
		{"attributes bare point", rec("sku", "A", "name", "N", "attributes", `{"a":1.}`), "attributes: not a JSON object", nil},
		{"attributes raw tab", rec("sku", "A", "name", "N", "attributes", "{\"a\":\"x\ty\"}"), "attributes: not a JSON object", nil},
		{"attributes escaped backslash-u", rec("sku", "A", "name", "N", "attributes", `{"a":"\\u0000"}`), "", nil},
		{"name invalid UTF-8", rec("sku", "A", "name", "N\xff"), "name: not valid UTF-8", nil},
		{"description NUL", rec("sku", "A", "name", "N", "description", "a\x00b"), "description: contains a NUL character", nil},
		{"unparsable record", &loader.Record{Line: 3, Reason: "record: bad"}, "record: bad", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row, reason := loader.Validate(tc.rec)
			if reason != tc.reason {
				t.Fatalf("reason %q, want %q", reason, tc.reason)
			}
			if tc.check != nil && !tc.check(row) {
				t.Fatalf("row %+v", row)
			}
		})
	}
}
