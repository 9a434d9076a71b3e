package loader

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// canonicalJSON rewrites a valid JSON object the way PostgreSQL prints it back as jsonb: keys
// ordered by length then bytes, the last of duplicate keys kept, ", " and ": " separators,
// strings re-escaped as jsonb does. Comparing that text with the stored jsonb's text spares
// the database a jsonb parse per unchanged row on a reload. It reports false for what it does
// not reproduce exactly (numbers with exponents); the load then compares as jsonb, which is
// always right, only slower.
//
// It also reports false for anything that is not JSON (it checks the grammar as it goes), for
// \u0000 and for unpaired surrogate escapes, so that true means json.Valid and checkAttributes
// would accept s if it is an object: Validate then reads the attributes once, not twice.
func canonicalJSON(s string) (string, bool) {
	c := canonicalizer{s: s}
	out, ok := c.value(make([]byte, 0, len(s)+len(s)/4))
	if !ok {
		return s, false
	}
	c.space()
	if c.i != len(s) {
		return s, false
	}
	return string(out), true
}

type canonicalizer struct {
	s     string
	i     int
	depth int
}

// maxDepth is encoding/json's limit on nesting, which json.Valid enforces.
const maxDepth = 10000

func (c *canonicalizer) space() {
	for c.i < len(c.s) && (c.s[c.i] == ' ' || c.s[c.i] == '\t' || c.s[c.i] == '\n' || c.s[c.i] == '\r') {
		c.i++
	}
}

// keyLess is jsonb's key order: shorter first, then bytewise.
func keyLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// member is an object's member, its value at vals[start:end] of its object.
type member struct {
	key        string
	start, end int
}

func (c *canonicalizer) value(out []byte) ([]byte, bool) {
	c.space()
	if c.i >= len(c.s) {
		return out, false
	}
	switch ch := c.s[c.i]; {
	case (ch == '{' || ch == '[') && c.depth == maxDepth:
		return out, false
	case ch == '{':
		// depth counts the containers open; only a success needs to close one, a failure
		// ends the whole parse.
		c.i++
		c.depth++
		// The members' values go into one buffer, in order, and are copied out sorted.
		members := make([]member, 0, 8)
		vals := make([]byte, 0, min(len(c.s)-c.i, 512))
		c.space()
		if c.i < len(c.s) && c.s[c.i] == '}' {
			c.i++
			c.depth--
			return append(out, "{}"...), true
		}
		for {
			c.space()
			key, ok := c.str()
			if !ok {
				return out, false
			}
			c.space()
			if c.i >= len(c.s) || c.s[c.i] != ':' {
				return out, false
			}
			c.i++
			start := len(vals)
			if vals, ok = c.value(vals); !ok {
				return out, false
			}
			members = append(members, member{key, start, len(vals)})
			more, ok := c.next('}')
			if !ok {
				return out, false
			}
			if !more {
				break
			}
		}
		// Insertion sort: objects are small, often already in order, and it is stable, so
		// the last of equal keys stays last.
		for a := 1; a < len(members); a++ {
			for b := a; b > 0 && keyLess(members[b].key, members[b-1].key); b-- {
				members[b], members[b-1] = members[b-1], members[b]
			}
		}
		out = append(out, '{')
		first := true
		for j, m := range members {
			if j+1 < len(members) && members[j+1].key == m.key {
				continue // the last of duplicate keys wins
			}
			if !first {
				out = append(out, ", "...)
			}
			first = false
			out = appendJSONBString(out, m.key)
			out = append(out, ": "...)
			out = append(out, vals[m.start:m.end]...)
		}
		c.depth--
		return append(out, '}'), true
	case ch == '[':
		c.i++
		c.depth++
		out = append(out, '[')
		c.space()
		if c.i < len(c.s) && c.s[c.i] == ']' {
			c.i++
			c.depth--
			return append(out, ']'), true
		}
		for n := 0; ; n++ {
			if n > 0 {
				out = append(out, ", "...)
			}
			var ok bool
			if out, ok = c.value(out); !ok {
				return out, false
			}
			more, ok := c.next(']')
			if !ok {
				return out, false
			}
			if !more {
				c.depth--
				return append(out, ']'), true
			}
		}
	case ch == '"':
		v, ok := c.str()
		if !ok {
			return out, false
		}
		return appendJSONBString(out, v), true
	case ch == '-' || ch >= '0' && ch <= '9':
		return c.number(out)
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if len(c.s)-c.i >= len(lit) && c.s[c.i:c.i+len(lit)] == lit {
				c.i += len(lit)
				return append(out, lit...), true
			}
		}
		return out, false
	}
}

// next reads what ends a member of an object or an element of an array: a comma (more is
// true) or the closing bracket; ok is false for anything else.
func (c *canonicalizer) next(closing byte) (more, ok bool) {
	c.space()
	if c.i >= len(c.s) {
		return false, false
	}
	switch c.s[c.i] {
	case ',':
		c.i++
		return true, true
	case closing:
		c.i++
		return false, true
	}
	return false, false
}

// number copies a number as numeric prints it: verbatim, except that numeric has no negative
// zero. It reads JSON's grammar (-? (0 | [1-9][0-9]*) (.[0-9]+)?), whatever follows being
// the caller's to judge. Exponents are left to the database.
func (c *canonicalizer) number(out []byte) ([]byte, bool) {
	start := c.i
	if c.s[c.i] == '-' {
		c.i++
	}
	digits := func() (n int, zero bool) {
		zero = true
		for ; c.i < len(c.s) && c.s[c.i] >= '0' && c.s[c.i] <= '9'; c.i++ {
			zero = zero && c.s[c.i] == '0'
			n++
		}
		return n, zero
	}
	n, zero := digits()
	if n == 0 || n > 1 && c.s[c.i-n] == '0' {
		return out, false
	}
	if c.i < len(c.s) && c.s[c.i] == '.' {
		c.i++
		m, z := digits()
		if m == 0 {
			return out, false
		}
		zero = zero && z
	}
	if c.i < len(c.s) && (c.s[c.i] == 'e' || c.s[c.i] == 'E') {
		return out, false
	}
	num := c.s[start:c.i]
	if zero && num[0] == '-' {
		num = num[1:]
	}
	return append(out, num...), true
}

// str decodes a JSON string at c.i.
func (c *canonicalizer) str() (string, bool) {
	if c.i >= len(c.s) || c.s[c.i] != '"' {
		return "", false
	}
	c.i++
	start := c.i
	// Fast path: no escapes. JSON has control characters only escaped.
	for c.i < len(c.s) && c.s[c.i] != '"' && c.s[c.i] != '\\' && c.s[c.i] >= ' ' {
		c.i++
	}
	if c.i < len(c.s) && c.s[c.i] == '"' {
		c.i++
		return c.s[start : c.i-1], true
	}
	b := []byte(c.s[start:c.i])
	for c.i < len(c.s) {
		ch := c.s[c.i]
		switch {
		case ch == '"':
			c.i++
			return string(b), true
		case ch < ' ':
			return "", false
		case ch != '\\':
			b = append(b, ch)
			c.i++
			continue
		}
		if c.i+1 >= len(c.s) {
			return "", false
		}
		esc := c.s[c.i+1]
		c.i += 2
		switch esc {
		case '"', '\\', '/':
			b = append(b, esc)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := c.hex()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				if c.i+1 >= len(c.s) || c.s[c.i] != '\\' || c.s[c.i+1] != 'u' {
					return "", false
				}
				c.i += 2
				lo, ok := c.hex()
				if !ok {
					return "", false
				}
				if r = utf16.DecodeRune(r, lo); r == utf8.RuneError {
					return "", false
				}
			}
			if r == 0 {
				return "", false
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", false
		}
	}
	return "", false
}

func (c *canonicalizer) hex() (rune, bool) {
	if c.i+4 > len(c.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(c.s[c.i:c.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	c.i += 4
	return rune(v), true
}

// appendJSONBString quotes s as PostgreSQL's escape_json does. The runs between the bytes it
// escapes are copied whole: every attribute key and string goes through here.
func appendJSONBString(out []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	out = append(out, '"')
	for {
		i := 0
		for i < len(s) && !jsonbEscaped[s[i]] {
			i++
		}
		out = append(out, s[:i]...)
		if i == len(s) {
			return append(out, '"')
		}
		switch ch := s[i]; ch {
		case '\b':
			out = append(out, `\b`...)
		case '\f':
			out = append(out, `\f`...)
		case '\n':
			out = append(out, `\n`...)
		case '\r':
			out = append(out, `\r`...)
		case '\t':
			out = append(out, `\t`...)
		case '"':
			out = append(out, `\"`...)
		case '\\':
			out = append(out, `\\`...)
		default:
			out = append(out, '\\', 'u', '0', '0', hexDigits[ch>>4], hexDigits[ch&0xf])
		}
		s = s[i+1:]
	}
}

// jsonbEscaped marks the bytes escape_json escapes: control characters, '"' and '\\'.
var jsonbEscaped = func() (t [256]bool) {
	for c := range ' ' {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()
