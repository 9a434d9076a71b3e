package event

import (
	"bytes"
	"encoding/json"
	"fmt"
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
)

// Key identifies a product: the replica identity of products.
type Key struct {
	SupplierID int64 `json:"supplier_id"`
	ID         int64 `json:"id"`
}

// Source says where in the WAL a change comes from.
type Source struct {
	Slot      string    // the replication slot that decoded it
	LSN       LSN       // the change's own LSN
	CommitLSN LSN       // the commit LSN of its transaction
	XID       uint32    // the transaction id
	CommitTS  time.Time // the commit timestamp
	Seq       int       // 0-based position of the change in its transaction
}

type sourceJSON struct {
	Slot      string    `json:"slot"`
	LSN       string    `json:"lsn"`
	CommitLSN string    `json:"commit_lsn"`
	XID       uint32    `json:"xid"`
	CommitTS  time.Time `json:"commit_ts"`
	Seq       int       `json:"seq"`
}

// MarshalJSON writes LSNs in PostgreSQL's text form (16/B374D848).
func (s Source) MarshalJSON() ([]byte, error) {
	return json.Marshal(sourceJSON{
		Slot: s.Slot, LSN: s.LSN.String(), CommitLSN: s.CommitLSN.String(),
		XID: s.XID, CommitTS: s.CommitTS.UTC(), Seq: s.Seq,
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Source) UnmarshalJSON(b []byte) error {
	var j sourceJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Source{Slot: j.Slot, XID: j.XID, CommitTS: j.CommitTS, Seq: j.Seq}
	var err error
	if j.LSN != "" {
		if s.LSN, err = ParseLSN(j.LSN); err != nil {
			return fmt.Errorf("source.lsn: %w", err)
		}
	}
	if j.CommitLSN != "" {
		if s.CommitLSN, err = ParseLSN(j.CommitLSN); err != nil {
			return fmt.Errorf("source.commit_lsn: %w", err)
		}
	}
	return nil
}

// Column is one column of a row image: its name and its value as JSON (numeric as a string
// exactly as PostgreSQL prints it, jsonb as JSON, timestamptz as RFC 3339, text verbatim,
// SQL NULL as null).
type Column struct {
	Name  string
	Value json.RawMessage
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

// MarshalJSON writes the row as an object, keys in column order.
func (r Row) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.Grow(64 * len(r))
	b.WriteByte('{')
	for i, c := range r {
		if i > 0 {
			b.WriteByte(',')
		}
		name, err := json.Marshal(c.Name)
		if err != nil {
			return nil, err
		}
		b.Write(name)
		b.WriteByte(':')
		if len(c.Value) == 0 {
			b.WriteString("null")
		} else {
			b.Write(c.Value)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads an object into columns, keeping the key order.
func (r *Row) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*r = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("row: want a JSON object, got %v", tok)
	}
	row := Row{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("row column %q: %w", name, err)
		}
		row = append(row, Column{Name: name, Value: v})
	}
	*r = row
	return nil
}

// Change is one row change: the event tidemark publishes, one NATS message each. Its JSON
// form is the wire contract documented in event.schema.json.
type Change struct {
	Op     Op     `json:"op"`
	Schema string `json:"schema"`
	Table  string `json:"table"`
	// Key is the product's key; for deletes it comes from the old key.
	Key Key `json:"key"`
	// After is the new row image on insert, update and snapshot. Columns sent as unchanged
	// TOAST are left out and named in UnchangedToast.
	After Row `json:"after,omitempty"`
	// Before is the old key on delete (the whole old row with REPLICA IDENTITY FULL), and the
	// old key on an update that changed it.
	Before Row `json:"before,omitempty"`
	// UnchangedToast lists the columns PostgreSQL did not send because an update left their
	// TOASTed values untouched: read them from the table if you need them.
	UnchangedToast []string `json:"unchanged_toast,omitempty"`
	Source         Source   `json:"source"`
	// TsMs is when tidemark decoded the change, in milliseconds since the Unix epoch.
	TsMs int64 `json:"ts_ms"`
}
