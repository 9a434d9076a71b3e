package event

import (
	"errors"
	"fmt"
)

// LSN is a position in PostgreSQL's write-ahead log. It converts to and from pglogrepl.LSN
// (and pg_lsn read as a number) by a plain conversion.
type LSN uint64

// String is the LSN in PostgreSQL's text form: two hexadecimal halves, 16/B374D848.
func (l LSN) String() string {
	var buf [17]byte
	return string(l.AppendTo(buf[:0]))
}

// AppendTo appends the text form of l to b.
func (l LSN) AppendTo(b []byte) []byte {
	b = appendHexUpper(b, uint32(l>>32))
	b = append(b, '/')
	return appendHexUpper(b, uint32(l))
}

// AppendText implements [encoding.TextAppender].
func (l LSN) AppendText(b []byte) ([]byte, error) { return l.AppendTo(b), nil }

// MarshalText implements [encoding.TextMarshaler].
func (l LSN) MarshalText() ([]byte, error) { return l.AppendTo(nil), nil }

// UnmarshalText implements [encoding.TextUnmarshaler].
func (l *LSN) UnmarshalText(text []byte) error {
	v, err := parseLSN(text)
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLSN reads an LSN in PostgreSQL's text form (16/B374D848, either case).
func ParseLSN(s string) (LSN, error) { return parseLSN([]byte(s)) }

var errLSNSyntax = errors.New("want two hexadecimal numbers of up to 8 digits such as 16/B374D848")

func parseLSN(s []byte) (LSN, error) {
	var halves [2]uint64
	h := 0
	digits := 0
	for _, c := range s {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c == '/' && h == 0 && digits > 0:
			h, digits = 1, 0
			continue
		default:
			return 0, fmt.Errorf("parse LSN %q: %w", s, errLSNSyntax)
		}
		if digits == 8 {
			return 0, fmt.Errorf("parse LSN %q: %w", s, errLSNSyntax)
		}
		halves[h] = halves[h]<<4 | uint64(d)
		digits++
	}
	if h != 1 || digits == 0 {
		return 0, fmt.Errorf("parse LSN %q: %w", s, errLSNSyntax)
	}
	return LSN(halves[0]<<32 | halves[1]), nil
}

func appendHexUpper(dst []byte, v uint32) []byte {
	const digits = "0123456789ABCDEF"
	var buf [8]byte
	i := len(buf)
	for {
		i--
		buf[i] = digits[v&0xf]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(dst, buf[i:]...)
}
