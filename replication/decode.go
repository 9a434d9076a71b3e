package replication

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/tidemark/tidemark/event"
)

type relColumn struct {
	name string
	ck   event.ColumnKey // name with its JSON key, written once per relation
	oid  uint32
	kind valueKind
	key  bool // part of the replica identity
}

// relation is a cached Relation message: pgoutput sends one before the first change of a
// table in a session and again after its definition changes, so the latest wins.
type relation struct {
	schema, table string
	cols          []relColumn
}

// decoder turns pgoutput messages into Changes. It is owned by the receive loop; the Change
// it hands out (and the memory its values point into) is reused for the next one.
type decoder struct {
	slot  string
	rels  map[uint32]*relation
	types *pgtype.Map
	now   func() time.Time

	inTxn     bool
	xid       uint32
	commitLSN pglogrepl.LSN
	commitTS  time.Time
	seq       int

	// marks are the open snapshot windows (see watermark.go).
	marks watermarks
	// passedOver lists the truncate messages not published (see partitionTruncate), for the
	// receive loop to log.
	passedOver []string

	change   event.Change
	epochBuf event.Epoch // the Epoch of change, for epoch events
	arena    []byte
	after    event.Row
	before   event.Row
	toast    []string
}

func newDecoder(slot string) *decoder {
	return &decoder{slot: slot, rels: map[uint32]*relation{}, types: pgtype.NewMap(), now: time.Now}
}

// msgKind is what a pgoutput message was, for the receive loop's bookkeeping.
type msgKind uint8

const (
	msgOther msgKind = iota
	msgBegin
	msgCommit
	msgChange
	msgMessage
)

// decoded is the result of one pgoutput message.
type decoded struct {
	kind msgKind
	// endLSN is the transaction's end LSN on commit, the message's LSN on a logical message.
	endLSN pglogrepl.LSN
	// commitTS is the transaction's commit time on begin.
	commitTS time.Time
}

// decode reads one pgoutput message at WAL position lsn, calling emit for every row change.
func (d *decoder) decode(lsn pglogrepl.LSN, data []byte, emit func(*event.Change) error) (decoded, error) {
	if len(data) == 0 {
		return decoded{}, fmt.Errorf("%w: empty message", ErrProtocol)
	}
	body := data[1:]
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeBegin:
		var m pglogrepl.BeginMessage
		if err := m.Decode(body); err != nil {
			return decoded{}, fmt.Errorf("%w: begin: %w", ErrProtocol, err)
		}
		d.inTxn, d.xid, d.commitLSN, d.commitTS, d.seq = true, m.Xid, m.FinalLSN, m.CommitTime, 0
		return decoded{kind: msgBegin, commitTS: m.CommitTime}, nil
	case pglogrepl.MessageTypeCommit:
		var m pglogrepl.CommitMessage
		if err := m.Decode(body); err != nil {
			return decoded{}, fmt.Errorf("%w: commit: %w", ErrProtocol, err)
		}
		d.inTxn = false
		d.marks.committed()
		return decoded{kind: msgCommit, endLSN: m.TransactionEndLSN}, nil
	case pglogrepl.MessageTypeRelation:
		var m pglogrepl.RelationMessage
		if err := safeDecode(m.Decode, body); err != nil {
			return decoded{}, fmt.Errorf("%w: relation: %w", ErrProtocol, err)
		}
		rel := &relation{schema: m.Namespace, table: m.RelationName}
		for _, c := range m.Columns {
			rel.cols = append(rel.cols, relColumn{name: c.Name, ck: event.NewColumnKey(c.Name), oid: c.DataType, kind: kindOf(c.DataType), key: c.Flags&1 != 0})
		}
		d.rels[m.RelationID] = rel
		return decoded{}, nil
	case pglogrepl.MessageTypeType:
		// Custom types are decoded through pgtype by OID or sent as text; nothing to cache.
		return decoded{}, nil
	case pglogrepl.MessageTypeOrigin:
		return decoded{}, nil
	case pglogrepl.MessageTypeMessage:
		var m pglogrepl.LogicalDecodingMessage
		if len(body) < 14 {
			return decoded{}, fmt.Errorf("%w: logical message too short", ErrProtocol)
		}
		if err := safeDecode(m.Decode, body); err != nil {
			return decoded{}, fmt.Errorf("%w: logical message: %w", ErrProtocol, err)
		}
		switch m.Prefix {
		case SnapshotLowPrefix:
			// A transactional low watermark opens its window at its commit: a restart must
			// replay from at or before it (see watermarks.holdLSN).
			at := m.LSN
			if m.Transactional {
				at = d.commitLSN
			}
			if err := d.marks.low(m.Content, at); err != nil {
				// It stays in the WAL: a reconnect would only read it again.
				return decoded{}, fmt.Errorf("%w: %w", ErrProtocol, err)
			}
		case SnapshotChunkPrefix:
			if err := d.snapshotChunk(lsn, m.Content, emit); err != nil {
				return decoded{}, err
			}
			return decoded{kind: msgChange}, nil
		case EpochOpenPrefix, EpochClosePrefix:
			// Only a transactional message has a place in commit order (package snapshot
			// writes them so); another is not tidemark's and is passed over.
			if !m.Transactional || !d.inTxn {
				break
			}
			op := event.OpEpochOpen
			if m.Prefix == EpochClosePrefix {
				op = event.OpEpochClose
			}
			if err := d.epoch(op, &m, emit); err != nil {
				return decoded{}, err
			}
			return decoded{kind: msgChange}, nil
		case TruncatePrefix:
			if !m.Transactional || !d.inTxn {
				break
			}
			emitted, err := d.partitionTruncate(&m, emit)
			if err != nil {
				return decoded{}, err
			}
			if emitted {
				return decoded{kind: msgChange}, nil
			}
		}
		// Heartbeats and other logical messages never become events.
		return decoded{kind: msgMessage, endLSN: m.LSN}, nil
	case pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete:
		if err := d.rowChange(data[0], lsn, body, emit); err != nil {
			return decoded{}, err
		}
		return decoded{kind: msgChange}, nil
	case pglogrepl.MessageTypeTruncate:
		var m pglogrepl.TruncateMessage
		if len(body) < 9 {
			return decoded{}, fmt.Errorf("%w: truncate too short", ErrProtocol)
		}
		if uint64(len(body)) < 5+4*uint64(binary.BigEndian.Uint32(body)) {
			return decoded{}, fmt.Errorf("%w: truncate relation list cut short", ErrProtocol)
		}
		if err := m.Decode(body); err != nil {
			return decoded{}, fmt.Errorf("%w: truncate: %w", ErrProtocol, err)
		}
		for _, id := range m.RelationIDs {
			rel, ok := d.rels[id]
			if !ok {
				return decoded{}, fmt.Errorf("%w: truncate of unknown relation %d", ErrProtocol, id)
			}
			c := d.reset(event.OpTruncate, rel, lsn)
			d.marks.observe(c.Op, c.Key)
			if err := emit(c); err != nil {
				return decoded{}, err
			}
		}
		return decoded{kind: msgChange}, nil
	}
	// Stream* messages need protocol v2 and streaming on, which tidemark does not ask for.
	return decoded{}, fmt.Errorf("%w: unexpected message type %q", ErrProtocol, data[0])
}

// holdLSN is the LSN the slot must not move past while a snapshot window is open (see
// watermarks.holdLSN).
func (d *decoder) holdLSN() (pglogrepl.LSN, bool) { return d.marks.holdLSN() }

// unpublished returns, once, what the decoder did not publish since the last call: the
// snapshot chunks that arrived after their window expired, those whose window saw more changes
// than it keeps track of, the epochs not closed because they lost chunks, and the truncate
// messages passed over.
func (d *decoder) unpublished() (expired, overflowed, unclosed, passedOver []string) {
	expired, overflowed, unclosed, passedOver = d.marks.expired, d.marks.overflowed, d.marks.unclosed, d.passedOver
	d.marks.expired, d.marks.overflowed, d.marks.unclosed, d.passedOver = nil, nil, nil, nil
	return expired, overflowed, unclosed, passedOver
}

// safeDecode runs one of pglogrepl's decoders, which index past the end of a truncated
// message instead of returning an error.
func safeDecode(decode func([]byte) error, src []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed message: %v", r)
		}
	}()
	return decode(src)
}

func (d *decoder) reset(op event.Op, rel *relation, lsn pglogrepl.LSN) *event.Change {
	c := &d.change
	d.arena = d.arena[:0]
	d.after, d.before, d.toast = d.after[:0], d.before[:0], d.toast[:0]
	*c = event.Change{
		Op: op, Schema: rel.schema, Table: rel.table,
		Source: event.Source{Slot: d.slot, LSN: event.LSN(lsn), CommitLSN: event.LSN(d.commitLSN), XID: d.xid, CommitTS: d.commitTS, Seq: d.seq},
		TsMs:   d.now().UnixMilli(),
	}
	d.seq++
	return c
}

func (d *decoder) rowChange(typ byte, lsn pglogrepl.LSN, src []byte, emit func(*event.Change) error) error {
	if len(src) < 5 {
		return fmt.Errorf("%w: %c message too short", ErrProtocol, typ)
	}
	relID := binary.BigEndian.Uint32(src)
	rel, ok := d.rels[relID]
	if !ok {
		return fmt.Errorf("%w: change to unknown relation %d", ErrProtocol, relID)
	}
	src = src[4:]
	op := event.OpInsert
	switch typ {
	case 'U':
		op = event.OpUpdate
	case 'D':
		op = event.OpDelete
	}
	c := d.reset(op, rel, lsn)
	// An insert carries the new row (N), a delete the old key or row (K, or O under REPLICA
	// IDENTITY FULL), and an update both, the old one only when it had to (the key changed,
	// or FULL).
	if typ != 'I' && (src[0] == 'K' || src[0] == 'O') {
		n, err := d.tuple(rel, src[1:], &d.before, false)
		if err != nil {
			return err
		}
		c.Before = d.before
		src = src[1+n:]
	} else if typ == 'D' {
		return fmt.Errorf("%w: delete without an old key", ErrProtocol)
	}
	if typ != 'D' {
		if len(src) == 0 || src[0] != 'N' {
			return fmt.Errorf("%w: %s without a new tuple", ErrProtocol, op)
		}
		if _, err := d.tuple(rel, src[1:], &d.after, true); err != nil {
			return err
		}
		c.After = d.after
	}
	c.UnchangedToast = d.toast
	if len(c.UnchangedToast) == 0 {
		c.UnchangedToast = nil
	}
	if len(c.After) > 0 {
		c.Key = keyOf(c.After)
	} else {
		c.Key = keyOf(c.Before)
	}
	d.marks.observe(c.Op, c.Key)
	if typ == 'U' && len(c.Before) > 0 {
		// An update that moved the key changes the old key too.
		d.marks.observe(event.OpDelete, keyOf(c.Before))
	}
	return emit(c)
}

// snapshotChunk publishes the rows of a snapshot chunk whose keys did not change since the
// chunk's low watermark, rendering values exactly as pgoutput's.
func (d *decoder) snapshotChunk(lsn pglogrepl.LSN, content []byte, emit func(*event.Change) error) error {
	chunk, keep, err := d.marks.chunk(content, lsn, d.commitLSN)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	rel := &relation{schema: chunk.Schema, table: chunk.Table, cols: make([]relColumn, len(chunk.Columns))}
	for i, c := range chunk.Columns {
		rel.cols[i] = relColumn{name: c.Name, ck: event.NewColumnKey(c.Name), oid: c.Type, kind: kindOf(c.Type)}
	}
	for _, values := range chunk.Rows {
		if len(values) != len(rel.cols) {
			return fmt.Errorf("%w: snapshot %s chunk %d: row of %d values for %d columns", ErrProtocol, chunk.ID, chunk.Chunk, len(values), len(rel.cols))
		}
		c := d.reset(event.OpSnapshot, rel, lsn)
		for i, v := range values {
			col := &rel.cols[i]
			if v == nil {
				d.after = append(d.after, col.ck.Column(jsonNull))
				continue
			}
			start := len(d.arena)
			if d.arena, err = d.appendValue(d.arena, col, []byte(*v)); err != nil {
				return fmt.Errorf("snapshot column %s: %w", col.name, err)
			}
			d.after = append(d.after, col.ck.Column(d.arena[start:len(d.arena):len(d.arena)]))
		}
		c.After = d.after
		c.Key = keyOf(c.After)
		if !keep(c.Key) {
			// A newer change of this product is already in the stream: the row would undo it.
			d.seq--
			continue
		}
		if err := emit(c); err != nil {
			return err
		}
	}
	return nil
}

// keyOf reads (supplier_id, id) from a decoded row image; a missing column reads as 0.
func keyOf(row event.Row) event.Key {
	k, _ := row.Key()
	return k
}

// tuple decodes TupleData into *row. For an old tuple ('K') Postgres sends every column with
// the non-key ones as null: only the key columns are kept. It returns the bytes consumed.
func (d *decoder) tuple(rel *relation, src []byte, row *event.Row, isNew bool) (int, error) {
	if len(src) < 2 {
		return 0, fmt.Errorf("%w: tuple too short", ErrProtocol)
	}
	n := int(binary.BigEndian.Uint16(src))
	if n > len(rel.cols) {
		return 0, fmt.Errorf("%w: tuple of %d columns for %s.%s with %d", ErrProtocol, n, rel.schema, rel.table, len(rel.cols))
	}
	p := 2
	for i := 0; i < n; i++ {
		if p >= len(src) {
			return 0, fmt.Errorf("%w: tuple cut short", ErrProtocol)
		}
		col := &rel.cols[i]
		t := src[p]
		p++
		switch t {
		case 'n':
			if isNew || col.key {
				*row = append(*row, col.ck.Column(jsonNull))
			}
		case 'u':
			if isNew {
				d.toast = append(d.toast, col.name)
			}
		case 't':
			if p+4 > len(src) {
				return 0, fmt.Errorf("%w: tuple cut short", ErrProtocol)
			}
			l := int(binary.BigEndian.Uint32(src[p:]))
			p += 4
			if l < 0 || p+l > len(src) {
				return 0, fmt.Errorf("%w: column %s value cut short", ErrProtocol, col.name)
			}
			start := len(d.arena)
			var err error
			d.arena, err = d.appendValue(d.arena, col, src[p:p+l])
			if err != nil {
				return 0, fmt.Errorf("column %s: %w", col.name, err)
			}
			p += l
			*row = append(*row, col.ck.Column(d.arena[start:len(d.arena):len(d.arena)]))
		default:
			return 0, fmt.Errorf("%w: column %s has tuple data type %q (binary mode is not used)", ErrProtocol, col.name, t)
		}
	}
	return p, nil
}
