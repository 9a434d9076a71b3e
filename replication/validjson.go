package replication

import "math/bits"

// validJSON reports whether v is one JSON value, accepting exactly what json.Valid accepts
// (whitespace around it, any bytes of 0x20 and above in strings, nesting up to 10,000 deep) at
// a fraction of its cost: every jsonb column of every change goes through it.
func validJSON(v []byte) bool {
	p := jsonChecker{b: v}
	p.space()
	if !p.value(0) {
		return false
	}
	p.space()
	return p.i == len(p.b)
}

// maxJSONDepth is encoding/json's limit on nesting: a deeper value is not valid to it.
const maxJSONDepth = 10000

type jsonChecker struct {
	b []byte
	i int
}

func (p *jsonChecker) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// value reads one value at p.i; depth is how many arrays and objects enclose it.
func (p *jsonChecker) value(depth int) bool {
	if p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; c {
	case '{':
		return p.object(depth + 1)
	case '[':
		return p.array(depth + 1)
	case '"':
		return p.string()
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	default:
		if c == '-' || c >= '0' && c <= '9' {
			n := numberLen(p.b[p.i:])
			p.i += n
			return n > 0
		}
		return false
	}
}

func (p *jsonChecker) literal(lit string) bool {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		return false
	}
	p.i += len(lit)
	return true
}

func (p *jsonChecker) object(depth int) bool {
	if depth > maxJSONDepth {
		return false
	}
	p.i++ // {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	for {
		if p.i >= len(p.b) || p.b[p.i] != '"' || !p.string() {
			return false
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		p.space()
		if !p.value(depth) {
			return false
		}
		if more, ok := p.next('}'); !more {
			return ok
		}
	}
}

func (p *jsonChecker) array(depth int) bool {
	if depth > maxJSONDepth {
		return false
	}
	p.i++ // [
	p.space()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return true
	}
	for {
		if !p.value(depth) {
			return false
		}
		if more, ok := p.next(']'); !more {
			return ok
		}
	}
}

// next reads what follows a member or an element: a comma, with more to come, or the
// closing bracket; anything else leaves the container invalid.
func (p *jsonChecker) next(closing byte) (more, ok bool) {
	p.space()
	if p.i >= len(p.b) {
		return false, false
	}
	switch p.b[p.i] {
	case ',':
		p.i++
		p.space()
		return true, true
	case closing:
		p.i++
		return false, true
	}
	return false, false
}

// string reads a string whose opening quote is at p.i.
func (p *jsonChecker) string() bool {
	b := p.b
	for i := nextSpecial(b, p.i+1); i < len(b); i = nextSpecial(b, i) {
		switch b[i] {
		case '"':
			p.i = i + 1
			return true
		case '\\':
			if i+1 >= len(b) {
				return false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return false
				}
				i += 6
			default:
				return false
			}
		default: // a control character
			return false
		}
	}
	return false
}

// Bytes of a word of eight, for finding a string's special bytes eight at a time.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// specials has the high bit set in each byte of w that is a control character, a double
// quote or a backslash, and maybe in bytes above (later than) such a byte: the classic "has a
// byte less than n" trick, whose borrows only run upwards from a byte that matches. The
// lowest bit set is therefore always a special byte, and 0 means there is none.
func specials(w uint64) uint64 {
	q, s := w^('"'*ones), w^('\\'*ones)
	return ((w-0x20*ones)&^w | (q-ones)&^q | (s-ones)&^s) & highs
}

func word8(b []byte, i int) uint64 {
	w := b[i : i+8]
	return uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
		uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
}

// nextSpecial returns the index of the first quote, backslash or control character in b from
// i on, len(b) if none, looking at eight bytes at a time (as event.AppendString does).
func nextSpecial(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := specials(word8(b, i)); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	if i >= len(b) {
		return len(b)
	}
	if len(b) >= 8 {
		// The last eight bytes, those before i shifted out (a special one among them would
		// borrow into the ones after it) and harmless 'a's shifted in.
		last := len(b) - 8
		sh := uint(i-last) * 8
		if m := specials(word8(b, last)>>sh | 0x6161616161616161<<(64-sh)); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		return len(b)
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c == '"' || c == '\\' {
			return i
		}
	}
	return i
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// numberLen returns the length of the JSON number at the start of b, 0 if none starts there:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func numberLen(b []byte) int {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i++; i < len(b) && isDigit(b[i]); i++ {
		}
	default:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return 0
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return 0
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i
}
