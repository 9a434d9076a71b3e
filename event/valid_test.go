package event_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/event"
)

// jsonCases are JSON texts valid and not, around every rule of the grammar and at every place
// of a word of eight in strings.
func jsonCases() []string {
	cases := []string{
		``, ` `, `null`, `true`, `false`, `nul`, `tru`, `fals`, `nullx`, `truee`, `-`, `0`, `-0`, `01`, `-01`, `1.`, `1.5`,
		`.5`, `1e5`, `1E+5`, `1e-5`, `1e`, `1e+`, `1.5e3`, `-1.25E-10`, `+1`, `0x10`, `1_000`, `NaN`, `Infinity`,
		`-Infinity`, `123456789012345678901234567890`, `1 2`, ` 1 `, "\t\n\r 1 \t\n\r", "\f1", `""`, `"`, `"a`, `"\"`,
		`"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\u00e9"`, `"\u00E9"`, `"\u00g9"`, `"\u00"`, `"\x"`, `"\a"`, `"\'"`, "\"\x00\"",
		"\"\x1f\"", "\"\x7f\"", "\"\xff\xfe\"", "\"\xc3\"", `"Zürich –"`, `[]`, `[ ]`, `[1,]`, `[,1]`, `[1 2]`, `[1,2]`,
		`[[[]]]`, `[[[]]`, `{}`, `{ }`, `{"a":1}`, `{"a" : 1 , "b":[true,null]}`, `{"a"}`, `{"a":}`, `{a:1}`,
		`{"a":1,}`, `{,}`, `{"a":1 "b":2}`, `{1:2}`, `{"a":1}}`, `[1]]`, `{"a":[1,{"b":"c"}]}`, `{"a":1}x`,
		`{"tags": ["trail", "waterproof"], "brand": "Ridgeline", "color": "forest green", "category": "jackets", "weight_g": 410}`,
		`{"k": [1, null]}`, `{"color": "red", "sizes": [1, 2.5], "nested": {"ok": true}}`, `{"a": "\"quoted\" \\ back"}`,
	}
	for _, special := range []string{`\"`, `\\`, `\u0041`, `\n`, "\x01", "\x1f", `"`, "\xe2\x80\x93", "\x80"} {
		for n := range 18 {
			s := strings.Repeat("a", n)
			cases = append(cases, `"`+s+special+s+`"`, `"`+s+special+`"`, `["`+s+`","`+special+s+`"]`, `"`+s+special)
		}
	}
	// encoding/json allows 10,000 levels of nesting, and no more.
	for _, n := range []int{9999, 10000, 10001} {
		cases = append(cases, strings.Repeat("[", n)+strings.Repeat("]", n),
			strings.Repeat(`{"a":`, n)+"1"+strings.Repeat("}", n))
	}
	return cases
}

// TestValid: Valid, which the replicator checks json and jsonb values with, agrees with
// json.Valid.
func TestValid(t *testing.T) {
	cases := jsonCases()
	// A special byte just before those its borrow would flag in a word of eight (a space
	// after a control character, '#' after a quote, ']' after a backslash), at every place in
	// the text's last eight bytes.
	for _, special := range []string{"\x01", `\"`, `\\`, `""`, `"`} {
		for _, next := range []string{" ", "!", "#", "$", "]", "^", "\x01", "a"} {
			for n := range 10 {
				for k := range 9 {
					s := strings.Repeat("a", n) + special + next + strings.Repeat("b", k)
					cases = append(cases, `"`+s+`"`, `["`+s+`"]`, `["","`+s+`"]`)
				}
			}
		}
	}
	cases = append(cases, `["","\\]"]`) // found by FuzzValid
	for _, s := range cases {
		if got, want := event.Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%.80q) = %v, json.Valid says %v", s, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range jsonCases() {
		if len(s) < 1000 {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := event.Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	v := []byte(`{"tags": ["trail", "waterproof"], "brand": "Ridgeline", "color": "forest green", "category": "jackets", "material": "recycled polyester", "weight_g": 410}`)
	b.Run("Valid", func(b *testing.B) {
		for b.Loop() {
			if !event.Valid(v) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		for b.Loop() {
			if !json.Valid(v) {
				b.Fatal("invalid")
			}
		}
	})
}
