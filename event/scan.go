package event

import (
	"encoding/json"
	"fmt"
	"math"
)

// maxDepth bounds the nesting of a value, as encoding/json does, so deep input cannot exhaust
// the stack.
const maxDepth = 10000

// scanner reads one JSON document in place: strings and values are slices of data, checked
// against the JSON grammar as they are read.
type scanner struct {
	data []byte
	pos  int
}

// errorf is an ErrMalformed error at the current position. what names the field.
func (s *scanner) errorf(what, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s (at byte %d)", ErrMalformed, what, fmt.Sprintf(format, args...), s.pos)
}

// ws skips white space. Every read peeks first, so it mostly finds none: a byte above the
// space is the one test it then costs.
func (s *scanner) ws() {
	for s.pos < len(s.data) {
		if c := s.data[s.pos]; c > ' ' || c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return
		}
		s.pos++
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

// atEnd says whether only white space is left.
func (s *scanner) atEnd() bool {
	s.ws()
	return s.pos >= len(s.data)
}

// found describes what is at the current position, for an error message.
func (s *scanner) found() string {
	if s.atEnd() {
		return "the end of the data"
	}
	switch s.data[s.pos] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "a number"
	}
	return fmt.Sprintf("%q", s.data[s.pos])
}

// null consumes a null if one is next.
func (s *scanner) null() bool {
	if s.peek() == 'n' && s.literal("null") {
		return true
	}
	return false
}

func (s *scanner) literal(word string) bool {
	if len(s.data)-s.pos >= len(word) && string(s.data[s.pos:s.pos+len(word)]) == word {
		s.pos += len(word)
		return true
	}
	return false
}

// object reads an object member by member: member is called with each name and must consume
// the value.
func (s *scanner) object(what string, member func(name []byte) error) error {
	if empty, err := s.open(what, '{', '}', "an object"); empty || err != nil {
		return err
	}
	for {
		if s.peek() != '"' {
			return s.errorf(what, "want a member name, found %s", s.found())
		}
		name, err := s.name(what)
		if err != nil {
			return err
		}
		if s.peek() != ':' {
			return s.errorf(what, "want ':' after a member name, found %s", s.found())
		}
		s.pos++
		s.ws()
		if err := member(name); err != nil {
			return err
		}
		if more, err := s.more(what, '}'); !more {
			return err
		}
	}
}

// array reads an array element by element: element is called at each and must consume it.
func (s *scanner) array(what string, element func() error) error {
	if empty, err := s.open(what, '[', ']', "an array"); empty || err != nil {
		return err
	}
	for {
		if err := element(); err != nil {
			return err
		}
		if more, err := s.more(what, ']'); !more {
			return err
		}
	}
}

// open reads the bracket that opens an object or an array (kind, for the error), and the
// closing one too when it follows at once: empty is true for {} and [].
func (s *scanner) open(what string, opening, closing byte, kind string) (empty bool, err error) {
	if s.peek() != opening {
		return false, s.errorf(what, "want %s, found %s", kind, s.found())
	}
	s.pos++
	if s.peek() == closing {
		s.pos++
		return true, nil
	}
	return false, nil
}

// more reads what follows a member or an element: a comma (more follow) or the closing
// bracket (nil error, none follow).
func (s *scanner) more(what string, closing byte) (bool, error) {
	switch s.peek() {
	case ',':
		s.pos++
		return true, nil
	case closing:
		s.pos++
		return false, nil
	}
	return false, s.errorf(what, "want ',' or '%c', found %s", closing, s.found())
}

// name reads a member name; one with escapes is unescaped into a new slice.
func (s *scanner) name(what string) ([]byte, error) {
	raw, escaped, err := s.str(what)
	if err != nil || !escaped {
		return raw, err
	}
	var name string
	if err := json.Unmarshal(s.data[s.pos-len(raw)-2:s.pos], &name); err != nil {
		return nil, s.errorf(what, "member name: %v", err)
	}
	return []byte(name), nil
}

// str reads a string and returns its content between the quotes, still escaped when escaped.
func (s *scanner) str(what string) (raw []byte, escaped bool, err error) {
	if s.peek() != '"' {
		return nil, false, s.errorf(what, "want a string, found %s", s.found())
	}
	start := s.pos + 1
	for i := NextEscape(s.data, start); i < len(s.data); i = NextEscape(s.data, i+1) {
		switch c := s.data[i]; {
		case c == '"':
			s.pos = i + 1
			return s.data[start:i], escaped, nil
		case c == '\\':
			escaped = true
			i++
			if i >= len(s.data) {
				break
			}
			switch s.data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.data) || !isHex(s.data[i+1]) || !isHex(s.data[i+2]) || !isHex(s.data[i+3]) || !isHex(s.data[i+4]) {
					s.pos = i
					return nil, false, s.errorf(what, `invalid \u escape in a string`)
				}
				i += 4
			default:
				s.pos = i
				return nil, false, s.errorf(what, "invalid escape \\%c in a string", s.data[i])
			}
		case c < 0x20:
			s.pos = i
			return nil, false, s.errorf(what, "control character %#x in a string", c)
		}
	}
	s.pos = len(s.data)
	return nil, false, s.errorf(what, "unterminated string")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Valid reports whether data is one JSON value, with white space around it, deciding exactly
// as json.Valid does (any byte of 0x20 and above in strings, 10,000 levels of nesting) at a
// fraction of its cost: the replicator checks every json and jsonb column with it.
func Valid(data []byte) bool {
	s := scanner{data: data}
	return s.skip("value", 0) == nil && s.atEnd()
}

// value reads any JSON value and returns it as it is in the data.
func (s *scanner) value(what string) ([]byte, error) {
	s.ws()
	start := s.pos
	if err := s.skip(what, 0); err != nil {
		return nil, err
	}
	return s.data[start:s.pos:s.pos], nil
}

// skip reads any value; depth is how many arrays and objects enclose it.
func (s *scanner) skip(what string, depth int) error {
	c := s.peek()
	if (c == '{' || c == '[') && depth >= maxDepth {
		return s.errorf(what, "nested more than %d deep", maxDepth)
	}
	switch c {
	case '{':
		return s.object(what, func([]byte) error { return s.skip(what, depth+1) })
	case '[':
		return s.array(what, func() error { return s.skip(what, depth+1) })
	case '"':
		_, _, err := s.str(what)
		return err
	case 't':
		if s.literal("true") {
			return nil
		}
	case 'f':
		if s.literal("false") {
			return nil
		}
	case 'n':
		if s.literal("null") {
			return nil
		}
	default:
		if c == '-' || c >= '0' && c <= '9' {
			_, err := s.number(what)
			return err
		}
	}
	return s.errorf(what, "want a JSON value, found %s", s.found())
}

// number reads a number as the JSON grammar has it and says whether it is an integer (no
// fraction, no exponent).
func (s *scanner) number(what string) (integer bool, err error) {
	d, i := s.data, s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		i = digits(d, i)
	default:
		s.pos = i
		return false, s.errorf(what, "invalid number")
	}
	integer = true
	if i < len(d) && d[i] == '.' {
		integer = false
		if j := digits(d, i+1); j > i+1 {
			i = j
		} else {
			s.pos = j
			return false, s.errorf(what, "invalid number")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		integer = false
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if j := digits(d, i); j > i {
			i = j
		} else {
			s.pos = j
			return false, s.errorf(what, "invalid number")
		}
	}
	s.pos = i
	return integer, nil
}

// digits returns the end of the decimal digits of d from i.
func digits(d []byte, i int) int {
	for i < len(d) && d[i] >= '0' && d[i] <= '9' {
		i++
	}
	return i
}

// integer reads a JSON integer whose magnitude fits a uint64.
func (s *scanner) integer(what string) (neg bool, n uint64, err error) {
	if c := s.peek(); c != '-' && (c < '0' || c > '9') {
		return false, 0, s.errorf(what, "want an integer, found %s", s.found())
	}
	start := s.pos
	isInt, err := s.number(what)
	if err != nil {
		return false, 0, err
	}
	if !isInt {
		return false, 0, s.errorf(what, "want an integer, found %s", s.data[start:s.pos])
	}
	neg, n, ok := parseInteger(s.data[start:s.pos])
	if !ok {
		return false, 0, s.errorf(what, "%s is out of range", s.data[start:s.pos])
	}
	return neg, n, nil
}

// int reads an integer in [lo, hi].
func (s *scanner) int(what string, lo, hi int64) (int64, error) {
	s.ws()
	start := s.pos
	neg, n, err := s.integer(what)
	if err != nil {
		return 0, err
	}
	v, ok := toInt64(neg, n)
	if !ok || v < lo || v > hi {
		return 0, s.errorf(what, "%s is out of range [%d, %d]", s.data[start:s.pos], lo, hi)
	}
	return v, nil
}

// uint64 reads a non-negative integer up to 2⁶⁴-1 (Debezium writes LSNs as numbers).
func (s *scanner) uint64(what string) (uint64, error) {
	if s.peek() == '-' {
		return 0, s.errorf(what, "want a non-negative integer, found a negative number")
	}
	_, n, err := s.integer(what)
	return n, err
}

// parseInteger reads an integer as JSON writes it (no leading zeros), its magnitude up to
// 2⁶⁴-1.
func parseInteger(b []byte) (neg bool, n uint64, ok bool) {
	neg = len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 1 && b[0] == '0' {
		return false, 0, false
	}
	for _, c := range b {
		d := uint64(c - '0')
		if c < '0' || c > '9' || n > (math.MaxUint64-d)/10 {
			return false, 0, false
		}
		n = n*10 + d
	}
	return neg, n, true
}

// toInt64 is the int64 of a sign and a magnitude, if it fits.
func toInt64(neg bool, n uint64) (int64, bool) {
	switch {
	case !neg && n <= math.MaxInt64:
		return int64(n), true
	case neg && n <= 1<<63:
		return int64(-n), true // -(1<<63) wraps to itself
	}
	return 0, false
}
