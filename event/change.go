package event

import (
	"bytes"
	"encoding/json"
	"time"
)

// Op is the kind of row change.
type Op string

// The operations an event can carry.
const (
	OpInsert   Op = "insert"
	OpUpdate   Op = "update"
	OpDelete   Op = "delete"
	OpTruncate Op = "truncate"
	OpSnapshot Op = "snapshot" // a row read by a snapshot, not a change
	// OpEpochOpen and OpEpochClose are control events, not row changes: they bound a full
	// snapshot of one supplier (an epoch) in the stream; see [Epoch].
	OpEpochOpen  Op = "epoch_open"
	OpEpochClose Op = "epoch_close"
)

// Epoch is a full snapshot of one supplier's products as a bounded part of the stream: an
// epoch_open event, then the snapshot's rows (op snapshot) among the live changes, then an
// epoch_close event. Once it closes, every product of the supplier that still exists has had
// an event after the open (a snapshot row, or a live insert or update while it ran), so a
// product of that supplier whose last event is older than the open is gone: its delete was
// missed (a lost replication slot, a subscriber that fell behind the stream's limits). See
// [Epoch.Stale]. An epoch without its close (a snapshot that died) says nothing: ignore it;
// a later snapshot of the supplier opens a new epoch.
type Epoch struct {
	ID         string // id: the epoch, unique
	SupplierID int64  // supplier_id: whose products it carries
	// OpenLSN (open_lsn) is the WAL position of the epoch's open, on both events. Every event
	// after the open in the stream has a commit LSN above it, every one before it a lower one.
	OpenLSN LSN
	// Rows (rows, on epoch_close) is how many rows the snapshot read. Rows that changed while
	// their chunk was read are carried by their change events instead of a snapshot event.
	Rows int64
}

// Stale reports whether a product of e's supplier whose newest event is at last is gone once
// e closes: no event carried it after the open.
func (e *Epoch) Stale(last Position) bool { return last.CommitLSN < e.OpenLSN }

// Key identifies a product: the replica identity of products.
type Key struct {
	SupplierID int64 `json:"supplier_id"`
	ID         int64 `json:"id"`
}

// Source says where in the WAL a change comes from.
type Source struct {
	Slot      string    // slot: the replication slot that decoded it
	LSN       LSN       // lsn: the change's own LSN
	CommitLSN LSN       // commit_lsn: the commit LSN of its transaction
	XID       uint32    // xid: the transaction id
	CommitTS  time.Time // commit_ts: the commit timestamp
	Seq       int       // seq: 0-based position of the change in its transaction
}

// Column is one column of a row image: its name and its value as JSON (numeric as a string
// exactly as PostgreSQL prints it, jsonb as JSON, timestamptz as RFC 3339, text verbatim,
// SQL NULL as null).
type Column struct {
	Name  string
	Value json.RawMessage
	// key is `"Name":` as a row's JSON writes it, when the column was made by a
	// [ColumnKey]; Row's JSON checks that it still belongs to Name before using it.
	key string
}

// ColumnKey is a column name with its JSON object key ("name":) written out once. The
// replicator makes one per column of a relation, so that each event's row copies its keys
// instead of escaping every name again.
type ColumnKey struct {
	name, key string
}

// NewColumnKey returns the key of the column named name.
func NewColumnKey(name string) ColumnKey {
	key := string(append(AppendString(nil, name), ':'))
	if len(key) != len(name)+3 {
		// A name with a byte to escape takes the general way.
		return ColumnKey{name: name}
	}
	// The name is the middle of its key, which makes the check that a column's key is its
	// name's a comparison of two equal pointers.
	return ColumnKey{name: key[1 : len(key)-2], key: key}
}

// Name is the column's name.
func (k ColumnKey) Name() string { return k.name }

// Column returns the column k with value v.
func (k ColumnKey) Column(v json.RawMessage) Column {
	return Column{Name: k.name, Value: v, key: k.key}
}

// Row is a row image in column order. It marshals as a JSON object.
type Row []Column

// Get returns the JSON value of column name.
func (r Row) Get(name string) (json.RawMessage, bool) {
	for _, c := range r {
		if c.Name == name {
			return c.Value, true
		}
	}
	return nil, false
}

// Key reads a product key from the image's supplier_id and id columns. ok is false unless both
// are there as integers; k then holds what was found.
func (r Row) Key() (k Key, ok bool) {
	var hasSupplier, hasID bool
	for _, c := range r {
		switch c.Name {
		case "supplier_id":
			k.SupplierID, hasSupplier = parseInt(c.Value)
		case "id":
			k.ID, hasID = parseInt(c.Value)
		}
	}
	return k, hasSupplier && hasID
}

// parseInt reads a JSON integer that fits an int64.
func parseInt(b []byte) (int64, bool) {
	neg, n, ok := parseInteger(b)
	if !ok {
		return 0, false
	}
	return toInt64(neg, n)
}

// MarshalJSON writes the row as an object, keys in column order.
func (r Row) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	return r.appendJSON(make([]byte, 0, 64*len(r)), nil), nil
}

// UnmarshalJSON reads an object into columns, keeping the key order.
func (r *Row) UnmarshalJSON(b []byte) error {
	s := scanner{data: bytes.Clone(b)}
	var d Decoder
	row, err := d.row(&s, "row", 8)
	if err != nil {
		return err
	}
	if !s.atEnd() {
		return s.errorf("row", "data after the row")
	}
	*r = row
	return nil
}

// Change is one row change, or one of the control events that bound a snapshot epoch
// ([OpEpochOpen], [OpEpochClose], with Epoch set): the event tidemark publishes, one NATS
// message each. Its JSON
// form (the field names below) is the wire contract documented in event.schema.json; the
// JSON methods are [Change.AppendJSON] and [Decode], so encoding/json writes and reads the
// same events as the publisher and the encoder.
type Change struct {
	Op     Op     // op
	Schema string // schema
	Table  string // table: the partition root; a truncate of one supplier partition names it
	// Key (key) is the product's key; for deletes it comes from the old key. Truncates
	// carry 0, 0.
	Key Key
	// After (after) is the new row image on insert, update and snapshot. Columns sent as
	// unchanged TOAST are left out and named in UnchangedToast.
	After Row
	// Before (before) is the old key on delete (the whole old row with REPLICA IDENTITY
	// FULL), and the old key on an update that changed it.
	Before Row
	// UnchangedToast (unchanged_toast) lists the columns PostgreSQL did not send because an
	// update left their TOASTed values untouched: read them from the table if you need them.
	UnchangedToast []string
	Source         Source // source
	// TsMs (ts_ms) is when tidemark decoded the change, in milliseconds since the Unix epoch.
	TsMs int64
	// Epoch (epoch) is set on epoch_open and epoch_close only. Their Key is (supplier, 0).
	Epoch *Epoch
}

// MarshalJSON writes the native event, as [Change.AppendJSON] does.
func (c Change) MarshalJSON() ([]byte, error) { return c.AppendJSON(nil), nil }

// UnmarshalJSON reads an event of either envelope, as [Decode] does; the Change keeps a copy
// of b.
func (c *Change) UnmarshalJSON(b []byte) error {
	ch, err := Decode(bytes.Clone(b))
	if err != nil {
		return err
	}
	*c = ch
	return nil
}
