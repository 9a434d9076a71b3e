package event_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/event"
)

// byteEscapes is what each byte becomes in an event's string, written out one byte at a time:
// the reference the word-at-a-time AppendString must match byte for byte.
var byteEscapes = func() (esc [256]string) {
	for c := range 256 {
		esc[c] = string([]byte{byte(c)})
		if c < 0x20 {
			esc[c] = fmt.Sprintf(`\u%04x`, c)
		}
	}
	esc['\n'], esc['\r'], esc['\t'], esc['"'], esc['\\'] = `\n`, `\r`, `\t`, `\"`, `\\`
	return esc
}()

func appendStringBytewise(dst []byte, v string) []byte {
	dst = append(dst, '"')
	for i := range len(v) {
		dst = append(dst, byteEscapes[v[i]]...)
	}
	return append(dst, '"')
}

// stringCases are texts with every byte that must be escaped at every place in a word of eight,
// beside UTF-8 and the bytes just around the escaped ones (0x1f/0x20, 0x21/0x23, 0x5b/0x5d,
// 0x7f, 0x80, 0xff).
func stringCases() []string {
	cases := []string{"", "a", "1234567", "12345678", "123456789", "Ridgeline K42 Hiking Jacket",
		`Crème & Co "Zürich" 5 °C × 3 – ok`, `back\slash`, "tab\there\nnew\rline", "\x00\x01\x1f\x7f",
		" !#[]~\x7f\x80\xff\xc3\xa9", strings.Repeat(`"`, 17), strings.Repeat(`\`, 9), strings.Repeat("é", 33),
		"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\x1f", strings.Repeat("Fjellrø ", 40)}
	for _, special := range []string{"\x00", "\x1f", "\n", "\t", `"`, `\`, "\x20", "\x21", "\x23", "\x5b", "\x5d", "\x7f", "\x80", "\xe2\x80\x93"} {
		for n := range 20 {
			for _, fill := range []string{"a", "é", "\x80"} {
				s := strings.Repeat(fill, n)
				cases = append(cases, s+special, special+s, s+special+s, s+special+special+s)
			}
		}
	}
	return cases
}

// borrowCases put a byte to escape just before the bytes its borrow would flag in a word of
// eight (a space after a control character, '#' after a quote, ']' after a backslash), at
// every place in the string's last eight bytes.
func borrowCases() []string {
	var cases []string
	for _, special := range []string{"\x00", "\x1f", "\n", `"`, `\`} {
		for _, next := range []string{" ", "!", "#", "$", "]", "^", "\x01", "a"} {
			for n := range 10 {
				for k := range 9 {
					cases = append(cases, strings.Repeat("a", n)+special+next+strings.Repeat("b", k))
				}
			}
		}
	}
	return cases
}

func TestAppendString(t *testing.T) {
	for _, s := range append(stringCases(), borrowCases()...) {
		want := appendStringBytewise([]byte("x"), s)
		if got := event.AppendString([]byte("x"), s); !bytes.Equal(got, want) {
			t.Errorf("AppendString(%q) = %s, want %s", s, got, want)
		}
		if got := event.AppendString([]byte("x"), []byte(s)); !bytes.Equal(got, want) {
			t.Errorf("AppendString([]byte(%q)) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range stringCases() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := appendStringBytewise(nil, s)
		got := event.AppendString(nil, []byte(s))
		if !bytes.Equal(got, want) {
			t.Fatalf("AppendString(%q) = %s, want %s", s, got, want)
		}
		if !json.Valid(got) {
			t.Fatalf("AppendString(%q) = %s: not JSON", s, got)
		}
	})
}

func BenchmarkAppendString(b *testing.B) {
	// A generated product's description: 294 bytes, UTF-8, a quoted word.
	s := []byte(`Built for wet trail days, the Ridgeline K42 Hiking Jacket keeps you dry from Fjellrø to Zürich: taped seams, a "storm" hood & pit zips. Rated to −5 °C, 3 × 2-way vents, weighs 410 g. Pairs with our Crème & Co base layers – machine wash at 30 °C, tumble dry low; recycled shell.`)
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = event.AppendString(buf[:0], s)
	}
}

func BenchmarkAppendStringBytewise(b *testing.B) {
	s := `Built for wet trail days, the Ridgeline K42 Hiking Jacket keeps you dry from Fjellrø to Zürich: taped seams, a "storm" hood & pit zips. Rated to −5 °C, 3 × 2-way vents, weighs 410 g. Pairs with our Crème & Co base layers – machine wash at 30 °C, tumble dry low; recycled shell.`
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = appendStringBytewise(buf[:0], s)
	}
}

// TestColumnKey: a row of columns made by ColumnKeys writes the same JSON as one of plain
// columns, for names that need escaping too, and a renamed column writes its new name.
func TestColumnKey(t *testing.T) {
	names := []string{"id", "supplier_id", "description", "", `qu"ote`, `back\slash`, "new\nline", "\x01", "Zürich", "a b"}
	var plain, keyed event.Row
	for i, name := range names {
		v := json.RawMessage(`"v` + string(rune('0'+i)) + `"`)
		k := event.NewColumnKey(name)
		if k.Name() != name {
			t.Errorf("NewColumnKey(%q).Name() = %q", name, k.Name())
		}
		plain = append(plain, event.Column{Name: name, Value: v})
		keyed = append(keyed, k.Column(v))
	}
	want, _ := plain.MarshalJSON()
	if got, _ := keyed.MarshalJSON(); !bytes.Equal(got, want) {
		t.Errorf("keyed row %s, want %s", got, want)
	}
	if !json.Valid(want) {
		t.Fatalf("invalid JSON %s", want)
	}
	for i := range keyed {
		keyed[i].Name += "x"
		plain[i].Name += "x"
	}
	want, _ = plain.MarshalJSON()
	if got, _ := keyed.MarshalJSON(); !bytes.Equal(got, want) {
		t.Errorf("renamed keyed row %s, want %s", got, want)
	}
	keyed[0].Name, plain[0].Name = "di", "di" // same length as the key's name
	want, _ = plain.MarshalJSON()
	if got, _ := keyed.MarshalJSON(); !bytes.Equal(got, want) {
		t.Errorf("renamed keyed row %s, want %s", got, want)
	}
}
