package loader

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// charset is a drop encoding. Drops in another encoding than UTF-8 are decoded to UTF-8 as
// they stream, before parsing: single-byte ones with a table made from golang.org/x/text's
// (ASCII runs are copied as they are, so a mostly-ASCII drop costs little), UTF-16 by its
// byte-order mark.
type charset struct {
	name  string
	table *[128]highByte // single-byte encodings: the UTF-8 of bytes 0x80-0xFF
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
	"utf-16":       {name: "utf-16"},
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
	return &charset{name: name, table: &t}
}

// decode writes s, converted from the single-byte encoding, into dst as UTF-8 and returns the
// bytes written. dst must hold 3 bytes per byte of s (the most one decodes to). ASCII is
// copied eight bytes at a time; bad is the index of a byte the encoding does not define, or -1.
func (cs *charset) decode(dst, s []byte) (n, bad int) {
	_ = dst[:3*len(s)]
	for i := 0; i < len(s); {
		for i+8 <= len(s) {
			w := binary.LittleEndian.Uint64(s[i:])
			if w&0x8080808080808080 != 0 {
				break
			}
			binary.LittleEndian.PutUint64(dst[n:], w)
			i, n = i+8, n+8
		}
		if i == len(s) {
			break
		}
		c := s[i]
		i++
		if c < 0x80 {
			dst[n] = c
			n++
			continue
		}
		h := &cs.table[c-0x80]
		if h.n == 0 {
			return n, i - 1
		}
		// Three bytes always fit (dst holds 3 per byte): write them, keep h.n.
		dst[n], dst[n+1], dst[n+2] = h.b[0], h.b[1], h.b[2]
		n += int(h.n)
	}
	return n, -1
}

// decodeString is decode of a string, for messages and detection.
func (cs *charset) decodeString(s string) (string, bool) {
	out := make([]byte, 3*len(s))
	n, bad := cs.decode(out, []byte(s))
	return string(out[:n]), bad < 0
}

// byteDecoder converts a drop in a single-byte encoding to UTF-8 as it streams, so the parsers
// read UTF-8 whatever the drop's encoding; a byte the encoding does not define stops it with
// ErrEncoding and the line it is on. It decodes straight into the reader's buffer.
type byteDecoder struct {
	r    io.Reader
	cs   *charset
	src  []byte
	line int64 // newlines decoded so far
	err  error
}

func newByteDecoder(r io.Reader, cs *charset) *byteDecoder {
	return &byteDecoder{r: r, cs: cs, src: make([]byte, 64<<10)}
}

func (d *byteDecoder) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	// A byte decodes to at most 3: read what is sure to fit.
	want := min(len(p)/3, len(d.src))
	if want == 0 {
		return 0, io.ErrShortBuffer
	}
	n, err := d.r.Read(d.src[:want])
	chunk := d.src[:n]
	out, bad := d.cs.decode(p, chunk)
	if bad >= 0 {
		from := bytes.LastIndexByte(chunk[:bad], '\n') + 1
		to := len(chunk)
		if i := bytes.IndexByte(chunk[bad:], '\n'); i >= 0 {
			to = bad + i
		}
		line := d.line + 1 + int64(bytes.Count(chunk[:bad], []byte("\n")))
		d.err = undefinedByte(line, "the drop", string(chunk[from:to]), bad-from, d.cs)
		return out, nil // what decoded before the bad byte is read; the error follows
	}
	d.line += int64(bytes.Count(chunk, []byte("\n")))
	if err != nil {
		d.err = err
	}
	return out, nil
}

// utf16Decoder converts UTF-16 (the byte order given by the byte-order mark, which it skips)
// to UTF-8 as it streams, four code units at a time while they are ASCII. An unpaired
// surrogate stops it with ErrEncoding rather than become U+FFFD.
type utf16Decoder struct {
	r     io.Reader
	big   bool
	bom   bool // the byte-order mark has been read
	src   []byte
	n     int // bytes of src not yet decoded: an odd byte or a high surrogate left over
	line  int64
	err   error // from r
	fatal error // the drop is not UTF-16
}

func newUTF16Decoder(r io.Reader) *utf16Decoder {
	return &utf16Decoder{r: r, src: make([]byte, 64<<10)}
}

func (d *utf16Decoder) Read(p []byte) (int, error) {
	// Two bytes of UTF-16 give at most three of UTF-8: read what is sure to fit.
	maxIn := min(len(d.src), len(p)/3*2)
	if maxIn < 4 {
		return 0, io.ErrShortBuffer
	}
	for {
		if d.fatal != nil {
			return 0, d.fatal
		}
		if d.err == nil && d.n < maxIn {
			m, err := d.r.Read(d.src[d.n:maxIn])
			d.n += m
			d.err = err
		}
		src := d.src[:d.n]
		if !d.bom {
			if len(src) < 2 {
				if d.err != nil {
					return 0, d.err
				}
				continue
			}
			d.bom, d.big, src = true, src[0] == 0xfe, src[2:]
		}
		out, used, err := decodeUTF16(p[:0], src, d.big, d.err != nil)
		d.line += int64(bytes.Count(out, []byte("\n")))
		d.n = copy(d.src, src[used:])
		switch {
		case err != nil:
			d.fatal = fmt.Errorf("line %d: %w", d.line+1, err)
			return len(out), nil // what decoded before is read; the error follows
		case len(out) > 0:
			return len(out), nil
		case d.err != nil && d.n > 0:
			d.fatal = fmt.Errorf("line %d: the drop ends in the middle of a UTF-16 character: %w", d.line+1, ErrEncoding)
		case d.err != nil:
			return 0, d.err
		}
	}
}

// decodeUTF16 appends src's UTF-16 code units to dst as UTF-8 and returns how many bytes it
// used: a unit or a high surrogate cut at the end is left for the next call, unless final.
func decodeUTF16(dst, src []byte, big, final bool) ([]byte, int, error) {
	i := 0
	for i+1 < len(src) {
		if !big {
			// Four ASCII units in a row: 0x00XX with XX < 0x80 each.
			for i+8 <= len(src) {
				w := binary.LittleEndian.Uint64(src[i:])
				if w&0xff80ff80ff80ff80 != 0 {
					break
				}
				dst = append(dst, byte(w), byte(w>>16), byte(w>>32), byte(w>>48))
				i += 8
			}
			if i+1 >= len(src) {
				break
			}
		}
		u := rune(src[i]) | rune(src[i+1])<<8
		if big {
			u = rune(src[i])<<8 | rune(src[i+1])
		}
		switch {
		case u < 0x80:
			dst = append(dst, byte(u))
			i += 2
		case u < 0xd800 || u > 0xdfff:
			dst = utf8.AppendRune(dst, u)
			i += 2
		case u < 0xdc00: // a high surrogate: its low one follows
			if i+3 >= len(src) {
				if final {
					return dst, i, fmt.Errorf("an unpaired UTF-16 surrogate at the end: %w", ErrEncoding)
				}
				return dst, i, nil
			}
			lo := rune(src[i+2]) | rune(src[i+3])<<8
			if big {
				lo = rune(src[i+2])<<8 | rune(src[i+3])
			}
			r := utf16.DecodeRune(u, lo)
			if r == utf8.RuneError {
				return dst, i, fmt.Errorf("an unpaired UTF-16 surrogate (0x%04X): %w", u, ErrEncoding)
			}
			dst = utf8.AppendRune(dst, r)
			i += 4
		default:
			return dst, i, fmt.Errorf("an unpaired UTF-16 surrogate (0x%04X): %w", u, ErrEncoding)
		}
	}
	return dst, i, nil
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
		if v, ok := cs.decodeString(value); ok {
			hint = fmt.Sprintf(", where it reads %s", quoteShort(v))
		}
	}
	return fmt.Errorf("line %d: %s is not valid UTF-8 (%s) and no encoding is set: %w; the drop looks %s%s: set encoding: %s in the supplier's drop profile, or give --encoding %s (tidemark load --detect FILE proposes a profile)",
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
