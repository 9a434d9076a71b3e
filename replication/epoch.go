package replication

import (
	"encoding/json"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/tidemark/tidemark/event"
)

// A full snapshot of a supplier is an epoch in the stream (see [event.Epoch]): package
// snapshot writes its open and its close as transactional logical messages, and the
// replicator turns each into an epoch_open or epoch_close event at its place in commit order,
// published through the same exactly-once path as the rows. An epoch whose chunks the
// replicator could not publish (a window that expired) is not closed: its close is dropped
// and logged, so no subscriber deletes products the epoch did not get to carry. The loss is
// kept beside the checkpoint (see [LostEpochs]), so a restarted replicator drops it too.
const (
	// EpochOpenPrefix marks an epoch's open; content is an [EpochMessage].
	EpochOpenPrefix = event.DebeziumEpochOpenPrefix
	// EpochClosePrefix marks an epoch's close; content is an [EpochMessage] with OpenLSN
	// and Rows set.
	EpochClosePrefix = event.DebeziumEpochClosePrefix
)

// EpochMessage is the content of an epoch's open and close messages.
type EpochMessage struct {
	ID       string `json:"id"` // the epoch; its chunks' low watermarks and chunks carry it too
	Supplier int64  `json:"supplier"`
	Schema   string `json:"schema"`
	Table    string `json:"table"`
	// OpenLSN is, on the close, the LSN of the open message (pg_logical_emit_message's
	// result). The open's own is the message's position in the WAL.
	OpenLSN string `json:"open_lsn,omitempty"`
	Rows    int64  `json:"rows,omitempty"` // on the close: rows the snapshot read
}

// epoch emits the event of an epoch message, except the close of an epoch that lost chunks,
// which is not published.
func (d *decoder) epoch(op event.Op, msg *pglogrepl.LogicalDecodingMessage, emit func(*event.Change) error) error {
	var m EpochMessage
	if err := json.Unmarshal(msg.Content, &m); err != nil {
		return fmt.Errorf("%w: decode %s at %s: %w", ErrProtocol, msg.Prefix, msg.LSN, err)
	}
	if m.ID == "" || m.Supplier <= 0 {
		return fmt.Errorf("%w: %s at %s: no epoch id or supplier", ErrProtocol, msg.Prefix, msg.LSN)
	}
	ep := event.Epoch{ID: m.ID, SupplierID: m.Supplier, OpenLSN: event.LSN(msg.LSN), Rows: m.Rows}
	if op == event.OpEpochClose {
		open, err := pglogrepl.ParseLSN(m.OpenLSN)
		if err != nil || open == 0 {
			return fmt.Errorf("%w: %s at %s: open_lsn %q", ErrProtocol, msg.Prefix, msg.LSN, m.OpenLSN)
		}
		ep.OpenLSN = event.LSN(open)
		if d.marks.spoiled(m.ID, d.commitLSN) {
			d.marks.unclosed = append(d.marks.unclosed, fmt.Sprintf("%s (supplier %d)", m.ID, m.Supplier))
			return nil
		}
	}
	rel := &relation{schema: m.Schema, table: m.Table}
	c := d.reset(op, rel, msg.LSN)
	c.Key = event.Key{SupplierID: m.Supplier}
	d.epochBuf = ep
	c.Epoch = &d.epochBuf
	return emit(c)
}
