package event

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// Decode reads one event in either envelope into a [Change]: tidemark's own (op insert,
// update, delete, truncate, snapshot, epoch_open, epoch_close; documented in
// event.schema.json) or Debezium's (op c, u, d, t, r, and m for the epoch events), as
// `tidemark replicate --format` writes them. The op says which envelope it is;
// both give the same Change for the same row change, except what Debezium's envelope does not
// carry: CommitTS only to the millisecond. In Debezium's envelope the key comes from the after
// image (the before image for a delete), as the publisher took it, and the columns carrying
// "__debezium_unavailable_value" are the unchanged TOAST columns.
//
// Fields Decode does not know are skipped, so events may grow fields without breaking
// consumers. An op it does not know gives an error wrapping [ErrUnknownOp]; anything that is
// not an event gives one wrapping [ErrMalformed].
//
// The values of the Change's rows are slices of data, not copies: data must not be modified
// while the Change is in use.
func Decode(data []byte) (Change, error) {
	var d Decoder
	return d.decode(data)
}

// A Decoder decodes one event after another, as [Decode] does, and keeps a single copy of
// the strings that repeat from event to event (column names, schema, table, slot), so that
// decoding a stream allocates little beyond each event's rows. The zero value is ready to use.
// A Decoder is not safe for concurrent use: give each goroutine its own.
type Decoder struct {
	strs map[string]string // nil: every string is a new copy
}

// maxInterned bounds the strings a Decoder keeps, whatever the stream holds.
const maxInterned = 1024

// Decode reads one event; see [Decode].
func (d *Decoder) Decode(data []byte) (Change, error) {
	if d.strs == nil {
		d.strs = make(map[string]string, 32)
	}
	return d.decode(data)
}

func (d *Decoder) intern(b []byte) string {
	if d.strs == nil {
		return string(b)
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.strs) < maxInterned {
		d.strs[s] = s
	}
	return s
}

// wire holds the fields of both envelopes as they are read; which ones make the Change
// depends on the op, which Debezium writes last.
type wire struct {
	op             []byte
	schema, table  string
	key            Key
	hasKey         bool
	after, before  Row
	unchangedToast []string
	src            wireSource
	tsMs           int64
	epoch          *Epoch
	// A Debezium message event: the op its prefix stands for, or the prefix when it is not
	// one of tidemark's.
	messageOp     Op
	messagePrefix string
}

type wireSource struct {
	slot, name       string // native slot, Debezium name
	schema, table    string // Debezium
	lsn              LSN
	lsnSet, lsnIsNum bool // native writes text, Debezium a number
	commitLSN        LSN
	hasCommitLSN     bool
	xid, txID        uint32    // native xid, Debezium txId
	commitTS         time.Time // native commit_ts
	tsMs             int64     // Debezium ts_ms, the commit time
	hasTsMs          bool
	seq              int
}

func (d *Decoder) decode(data []byte) (Change, error) {
	s := scanner{data: data}
	var w wire
	if s.peek() != '{' {
		return Change{}, s.errorf("event", "want a JSON object, found %s", s.found())
	}
	if err := s.object("event", func(name []byte) error { return d.member(&s, &w, name) }); err != nil {
		return Change{}, err
	}
	if !s.atEnd() {
		return Change{}, s.errorf("event", "data after the event")
	}
	return w.change()
}

func (d *Decoder) member(s *scanner, w *wire, name []byte) error {
	var err error
	switch string(name) {
	case "op":
		raw, escaped, serr := s.str("op")
		if serr != nil {
			return serr
		}
		w.op = raw
		if escaped {
			var op string
			if err := json.Unmarshal(s.data[s.pos-len(raw)-2:s.pos], &op); err != nil {
				return s.errorf("op", "%v", err)
			}
			w.op = append([]byte{}, op...)
		}
	case "schema":
		w.schema, err = d.text(s, "schema")
	case "table":
		w.table, err = d.text(s, "table")
	case "key":
		if s.null() {
			return nil
		}
		w.hasKey = true
		var hasSupplier, hasID bool
		err = s.object("key", func(name []byte) error {
			var err error
			switch string(name) {
			case "supplier_id":
				hasSupplier = true
				w.key.SupplierID, err = s.int("key.supplier_id", math.MinInt64, math.MaxInt64)
			case "id":
				hasID = true
				w.key.ID, err = s.int("key.id", math.MinInt64, math.MaxInt64)
			default:
				_, err = s.value("key")
			}
			return err
		})
		if err == nil && (!hasSupplier || !hasID) {
			err = s.errorf("key", "want supplier_id and id")
		}
	case "after":
		w.after, err = d.row(s, "after", 10)
	case "before":
		w.before, err = d.row(s, "before", 2)
	case "unchanged_toast":
		w.unchangedToast, err = d.names(s, "unchanged_toast")
	case "source":
		if s.null() {
			return nil
		}
		err = s.object("source", func(name []byte) error { return d.source(s, &w.src, name) })
	case "ts_ms":
		w.tsMs, err = s.int("ts_ms", math.MinInt64, math.MaxInt64)
	case "epoch":
		w.epoch, err = d.epoch(s, "epoch")
	case "message":
		err = d.message(s, w)
	default:
		_, err = s.value("event")
	}
	return err
}

func (d *Decoder) source(s *scanner, src *wireSource, name []byte) error {
	var err error
	switch string(name) {
	case "slot":
		src.slot, err = d.text(s, "source.slot")
	case "name":
		src.name, err = d.text(s, "source.name")
	case "schema":
		src.schema, err = d.text(s, "source.schema")
	case "table":
		src.table, err = d.text(s, "source.table")
	case "lsn":
		src.lsnSet = true
		if s.peek() == '"' {
			src.lsn, err = d.lsn(s, "source.lsn")
		} else {
			src.lsnIsNum = true
			var n uint64
			n, err = s.uint64("source.lsn")
			src.lsn = LSN(n)
		}
	case "commit_lsn":
		src.hasCommitLSN = true
		src.commitLSN, err = d.lsn(s, "source.commit_lsn")
	case "xid":
		var n int64
		n, err = s.int("source.xid", 0, math.MaxUint32)
		src.xid = uint32(n)
	case "txId":
		var n int64
		n, err = s.int("source.txId", 0, math.MaxUint32)
		src.txID = uint32(n)
	case "commit_ts":
		var raw []byte
		if raw, _, err = s.str("source.commit_ts"); err != nil {
			return err
		}
		if err := src.commitTS.UnmarshalText(raw); err != nil {
			return s.errorf("source.commit_ts", "want an RFC 3339 time: %v", err)
		}
		// What AppendJSON can write again: RFC 3339 has four-digit years.
		if y := src.commitTS.UTC().Year(); y < 0 || y > 9999 {
			return s.errorf("source.commit_ts", "year %d in UTC is out of range", y)
		}
	case "ts_ms":
		src.hasTsMs = true
		src.tsMs, err = s.int("source.ts_ms", math.MinInt64, math.MaxInt64)
	case "seq":
		var n int64
		n, err = s.int("source.seq", 0, math.MaxInt)
		src.seq = int(n)
	default:
		_, err = s.value("source")
	}
	return err
}

// text reads a string, interned.
func (d *Decoder) text(s *scanner, what string) (string, error) {
	raw, escaped, err := s.str(what)
	if err != nil {
		return "", err
	}
	if !escaped {
		return d.intern(raw), nil
	}
	var v string
	if err := json.Unmarshal(s.data[s.pos-len(raw)-2:s.pos], &v); err != nil {
		return "", s.errorf(what, "%v", err)
	}
	return v, nil
}

func (d *Decoder) lsn(s *scanner, what string) (LSN, error) {
	if s.peek() != '"' {
		return 0, s.errorf(what, "want an LSN as text such as 16/B374D848, found %s", s.found())
	}
	raw, escaped, err := s.str(what)
	if err != nil {
		return 0, err
	}
	if escaped {
		var v string
		if err := json.Unmarshal(s.data[s.pos-len(raw)-2:s.pos], &v); err != nil {
			return 0, s.errorf(what, "%v", err)
		}
		raw = []byte(v)
	}
	lsn, err := parseLSN(raw)
	if err != nil {
		return 0, s.errorf(what, "%v", err)
	}
	return lsn, nil
}

// row reads a row image; null is no image.
func (d *Decoder) row(s *scanner, what string, capacity int) (Row, error) {
	if s.null() {
		return nil, nil
	}
	row := make(Row, 0, capacity)
	err := s.object(what, func(name []byte) error {
		v, err := s.value(what)
		if err != nil {
			return err
		}
		row = append(row, Column{Name: d.intern(name), Value: v})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return row, nil
}

// names reads an array of strings; null and [] are none.
func (d *Decoder) names(s *scanner, what string) ([]string, error) {
	if s.null() {
		return nil, nil
	}
	if s.peek() != '[' {
		return nil, s.errorf(what, "want an array of strings, found %s", s.found())
	}
	var out []string
	err := s.array(what, func() error {
		name, err := d.text(s, what)
		out = append(out, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// opOf maps an op of either envelope to its Op and the envelope it belongs to; the two
// envelopes' codes do not overlap.
func opOf(code []byte) (Op, Format, bool) {
	switch string(code) {
	case "insert":
		return OpInsert, FormatNative, true
	case "update":
		return OpUpdate, FormatNative, true
	case "delete":
		return OpDelete, FormatNative, true
	case "truncate":
		return OpTruncate, FormatNative, true
	case "snapshot":
		return OpSnapshot, FormatNative, true
	case "epoch_open":
		return OpEpochOpen, FormatNative, true
	case "epoch_close":
		return OpEpochClose, FormatNative, true
	case "c":
		return OpInsert, FormatDebezium, true
	case "u":
		return OpUpdate, FormatDebezium, true
	case "d":
		return OpDelete, FormatDebezium, true
	case "t":
		return OpTruncate, FormatDebezium, true
	case "r":
		return OpSnapshot, FormatDebezium, true
	}
	return "", "", false
}

// change builds the Change from what was read and checks that it is whole.
func (w *wire) change() (Change, error) {
	if len(w.op) == 0 {
		return Change{}, fmt.Errorf("%w: no op", ErrMalformed)
	}
	op, format, ok := opOf(w.op)
	if string(w.op) == "m" {
		// Debezium's message event: tidemark's epochs are the ones it knows.
		if w.messageOp == "" {
			return Change{}, fmt.Errorf("%w: \"m\" (a message event) with prefix %q", ErrUnknownOp, w.messagePrefix)
		}
		op, format, ok = w.messageOp, FormatDebezium, true
	}
	if !ok {
		return Change{}, fmt.Errorf("%w: %q", ErrUnknownOp, w.op)
	}
	c := Change{Op: op, After: w.after, Before: w.before, TsMs: w.tsMs, Epoch: w.epoch}
	epoch := op == OpEpochOpen || op == OpEpochClose
	switch {
	case epoch && c.Epoch == nil:
		return Change{}, fmt.Errorf("%w: %s without an epoch", ErrMalformed, op)
	case epoch && (c.After != nil || c.Before != nil):
		return Change{}, fmt.Errorf("%w: %s with a row image", ErrMalformed, op)
	case !epoch:
		c.Epoch = nil // a field a row change does not have: skipped like any unknown one
	}
	src := &w.src
	switch format {
	case FormatNative:
		if src.lsnIsNum {
			return Change{}, fmt.Errorf("%w: source.lsn: want an LSN as text such as 16/B374D848, found a number", ErrMalformed)
		}
		if !w.hasKey && op != OpTruncate {
			return Change{}, fmt.Errorf("%w: %s without a key", ErrMalformed, op)
		}
		c.Schema, c.Table, c.Key, c.UnchangedToast = w.schema, w.table, w.key, w.unchangedToast
		c.Source = Source{Slot: src.slot, LSN: src.lsn, CommitLSN: src.commitLSN, XID: src.xid, CommitTS: src.commitTS, Seq: src.seq}
	case FormatDebezium:
		if src.lsnSet && !src.lsnIsNum {
			return Change{}, fmt.Errorf("%w: source.lsn: want a number in the Debezium envelope, found a string", ErrMalformed)
		}
		c.Schema, c.Table = src.schema, src.table
		c.After, c.UnchangedToast = unavailable(c.After)
		c.Source = Source{Slot: src.name, LSN: src.lsn, CommitLSN: src.commitLSN, XID: src.txID, Seq: src.seq}
		if src.hasTsMs {
			c.Source.CommitTS = time.UnixMilli(src.tsMs).UTC()
		}
		// The key as the publisher took it from the row, missing columns as 0.
		switch op {
		case OpEpochOpen, OpEpochClose:
			c.Key = Key{SupplierID: c.Epoch.SupplierID}
		case OpDelete:
			if c.Before == nil {
				return Change{}, fmt.Errorf("%w: delete without a before image", ErrMalformed)
			}
			c.Key, _ = c.Before.Key()
		case OpTruncate:
		default:
			c.Key, _ = c.After.Key()
		}
	}
	switch op {
	case OpInsert, OpUpdate, OpSnapshot:
		if c.After == nil {
			return Change{}, fmt.Errorf("%w: %s without an after image", ErrMalformed, op)
		}
	}
	if !src.hasCommitLSN {
		return Change{}, fmt.Errorf("%w: no source.commit_lsn", ErrMalformed)
	}
	return c, nil
}

// debeziumUnavailable is the placeholder as it appears in an image.
const debeziumUnavailable = `"` + DebeziumUnavailable + `"`

// unavailable takes the columns with Debezium's placeholder out of an after image, in place,
// and returns their names: the unchanged TOAST columns.
func unavailable(after Row) (Row, []string) {
	var names []string
	n := 0
	for _, col := range after {
		if string(col.Value) == debeziumUnavailable {
			names = append(names, col.Name)
			continue
		}
		after[n] = col
		n++
	}
	clear(after[n:])
	return after[:n], names
}
