package event

import (
	"cmp"
	"strconv"
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
	b := p.CommitLSN.AppendTo(buf[:0])
	b = append(b, ':')
	return string(strconv.AppendInt(b, int64(p.Seq), 10))
}
