package loader

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
)

// ErrEncoding is returned (wrapped, with the line, the bytes and the likely encoding) when a drop
// is not in the encoding it is read with: not UTF-8 while no encoding is set, or a byte the set
// encoding does not define. The load stops there, writing nothing, rather than reject record
// after record of a drop read the wrong way.
var ErrEncoding = errors.New("not in the drop's encoding")

// charset is a drop encoding. Single-byte ones are decoded field by field with a table (ASCII
// runs are copied as they are, so a mostly-ASCII drop costs little); UTF-16 is decoded as a
// stream before parsing.
type charset struct {
	name  string
	table *[128]highByte // single-byte encodings: the UTF-8 of bytes 0x80-0xFF
	x     encoding.Encoding
}

// highByte is the UTF-8 form of one byte above 0x7F; n == 0 where the encoding defines none.
type highByte struct {
	b [3]byte
	n uint8
}

var charsets = map[string]*charset{
	"utf-8":        {name: "utf-8"},
	"windows-1252": singleByte("windows-1252", charmap.Windows1252),
	"iso-8859-1":   singleByte("iso-8859-1", charmap.ISO8859_1),
	"iso-8859-15":  singleByte("iso-8859-15", charmap.ISO8859_15),
	"utf-16":       {name: "utf-16", x: unicode.UTF16(unicode.LittleEndian, unicode.ExpectBOM)},
}

var charsetAliases = map[string]string{
	"utf8": "utf-8", "cp1252": "windows-1252", "win1252": "windows-1252", "windows1252": "windows-1252",
	"latin1": "iso-8859-1", "latin-1": "iso-8859-1", "iso8859-1": "iso-8859-1", "iso88591": "iso-8859-1",
	"latin9": "iso-8859-15", "latin-9": "iso-8859-15", "iso8859-15": "iso-8859-15", "iso885915": "iso-8859-15",
	"utf16": "utf-16",
}

func charsetOf(name string) (*charset, error) {
	n := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), "_", "-")
	if a, ok := charsetAliases[n]; ok {
		n = a
	}
	cs, ok := charsets[n]
	if !ok {
		return nil, badProfile("encoding %q: want utf-8, windows-1252, iso-8859-1, iso-8859-15 or utf-16", name)
	}
	return cs, nil
}

func singleByte(name string, cm *charmap.Charmap) *charset {
	var t [128]highByte
	for i := range t {
		r := cm.DecodeByte(byte(0x80 + i))
		if r == utf8.RuneError {
			continue // undefined in this encoding
		}
		var h highByte
		h.n = uint8(utf8.EncodeRune(h.b[:], r))
		t[i] = h
	}
	return &charset{name: name, table: &t, x: cm}
}

// firstHigh returns the index of the first byte of s above 0x7F, or -1.
func firstHigh(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if w&0x8080808080808080 != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if s[i] >= 0x80 {
			return i
		}
	}
	return -1
}

// decode converts s from the single-byte encoding to UTF-8 into buf (reused), returning s itself
// when it is all ASCII. bad is the index of a byte the encoding does not define, or -1.
func (cs *charset) decode(s string, buf []byte) (out string, bad int, _ []byte) {
	i := firstHigh(s)
	if i < 0 {
		return s, -1, buf
	}
	buf = append(buf[:0], s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c < 0x80 {
			buf = append(buf, c)
			continue
		}
		h := &cs.table[c-0x80]
		if h.n == 0 {
			return s, i, buf
		}
		buf = append(buf, h.b[:h.n]...)
	}
	return string(buf), -1, buf
}

// guessCharset names the encoding b most likely is, from its bytes alone.
func guessCharset(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0xff, 0xfe}), bytes.HasPrefix(b, []byte{0xfe, 0xff}):
		return "utf-16"
	case validUTF8Prefix(b):
		return "utf-8"
	}
	var c1, euro15 int
	for _, c := range b {
		switch {
		case c >= 0x80 && c <= 0x9f && charsets["windows-1252"].table[c-0x80].n > 0:
			c1++
		case c == 0xa4:
			euro15++
		}
	}
	// ISO-8859-1 and Windows-1252 agree on 0xA0-0xFF, and 0x80-0x9F are control characters in
	// ISO-8859-1 that real text never holds: there Windows-1252 has € ‚ „ … ‘ ’ “ ” – —.
	// ISO-8859-15 differs from both mainly at 0xA4, its €, where they have ¤.
	if c1 == 0 && euro15 > 0 {
		return "iso-8859-15"
	}
	return "windows-1252"
}

// validUTF8Prefix reports whether b is UTF-8, but for a character cut at its end.
func validUTF8Prefix(b []byte) bool {
	if utf8.Valid(b) {
		return true
	}
	for cut := 1; cut < utf8.UTFMax && cut <= len(b); cut++ {
		if utf8.Valid(b[:len(b)-cut]) && !utf8.FullRune(b[len(b)-cut:]) {
			return true
		}
	}
	return false
}

// notUTF8 is the error for invalid UTF-8 where no encoding is set; sample is the context the
// guess is made from (the start of the drop, or the record).
func notUTF8(line int64, field, value string, sample []byte) error {
	guess := guessCharset(sample)
	if guess == "utf-8" {
		guess = guessCharset([]byte(value))
	}
	hint := ""
	if cs := charsets[guess]; cs != nil && cs.table != nil {
		if v, bad, _ := cs.decode(value, nil); bad < 0 {
			hint = fmt.Sprintf(", where it reads %s", quoteShort(v))
		}
	}
	return fmt.Errorf("line %d: %s is not valid UTF-8 (%s) and the profile sets no encoding: %w; the drop looks %s%s: set encoding: %s in the supplier's profile, or give --encoding %s (tidemark load --detect FILE proposes a profile)",
		line, field, quoteBytes(value), ErrEncoding, guess, hint, guess, guess)
}

// undefinedByte is the error for a byte the set single-byte encoding does not define.
func undefinedByte(line int64, field, value string, at int, cs *charset) error {
	guess := guessCharset([]byte(value))
	return fmt.Errorf("line %d: %s has the byte 0x%02X (%s), which %s does not define: %w; the drop looks %s: set encoding: %s",
		line, field, value[at], quoteBytes(value), cs.name, ErrEncoding, guess, guess)
}

// quoteBytes quotes s with invalid bytes as \x escapes, shortened.
func quoteBytes(s string) string {
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return fmt.Sprintf("%q", s)
}
