package replication

import "github.com/tidemark/tidemark/event"

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
	for i := event.NextEscape(b, p.i+1); i < len(b); i = event.NextEscape(b, i) {
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
