package event

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Position is a change's place in commit order: the commit LSN of its transaction, then its
// place in that transaction. Changes of one product reach the stream in this order; a consumer
// that keeps the newest Position it applied per [Key] can drop an older or repeated event
// (a redelivery, a replay) by comparing.
type Position struct {
	CommitLSN LSN
	Seq       int
}

// Position is where c stands in commit order.
func (c *Change) Position() Position {
	return Position{CommitLSN: c.Source.CommitLSN, Seq: c.Source.Seq}
}

// Compare returns -1 if p comes before q in commit order, 0 if they are the same change, and
// +1 if p comes after q.
func (p Position) Compare(q Position) int {
	if c := cmp.Compare(p.CommitLSN, q.CommitLSN); c != 0 {
		return c
	}
	return cmp.Compare(p.Seq, q.Seq)
}

// String writes p as <commit_lsn>:<seq> (16/B374D848:42), the form of the Nats-Msg-Id header
// tidemark publishes each change with.
func (p Position) String() string {
	var buf [32]byte
	return string(p.Append(buf[:0]))
}

// IsZero reports whether p is the zero Position, before every change.
func (p Position) IsZero() bool { return p == Position{} }

// Append appends p in its message-id form, <commit_lsn>:<seq>, to dst.
func (p Position) Append(dst []byte) []byte {
	dst = p.CommitLSN.AppendTo(dst)
	dst = append(dst, ':')
	return strconv.AppendInt(dst, int64(p.Seq), 10)
}

// ParsePosition reads a position in the form String writes.
func ParsePosition(s string) (Position, error) {
	lsn, seq, ok := strings.Cut(s, ":")
	if !ok {
		return Position{}, fmt.Errorf("position %q: want <commit_lsn>:<seq>", s)
	}
	commit, err := ParseLSN(lsn)
	if err != nil {
		return Position{}, fmt.Errorf("position %q: %w", s, err)
	}
	n, err := strconv.Atoi(seq)
	if err != nil || n < 0 {
		return Position{}, fmt.Errorf("position %q: seq is not a non-negative integer", s)
	}
	return Position{CommitLSN: commit, Seq: n}, nil
}
