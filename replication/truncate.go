package replication

import (
	"encoding/json"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/event"
)

// TruncatePrefix marks the TRUNCATE of one supplier partition; content is a
// [TruncateMessage]. pgoutput does not send such a truncate when the publication publishes
// through the partition root, so a trigger on each partition (sql/0008_partition_truncates.sql)
// writes this transactional message instead, and the replicator turns it into the truncate
// event of that partition at its place in commit order.
const TruncatePrefix = "tidemark.truncate"

// TruncateMessage is the content of a [TruncatePrefix] message: the truncated table.
type TruncateMessage struct {
	Schema string `json:"schema"`
	Table  string `json:"table"`
}

// partitionTruncate emits the truncate event of a [TruncatePrefix] message. One whose content
// is not a supplier partition of products (written by hand, not by the trigger) is passed
// over and logged: publishing it could truncate a whole catalogue downstream, and failing on it
// would stop replication at the same place after every restart.
func (d *decoder) partitionTruncate(msg *pglogrepl.LogicalDecodingMessage, emit func(*event.Change) error) (emitted bool, err error) {
	var m TruncateMessage
	err = json.Unmarshal(msg.Content, &m)
	supplier, ok := catalog.PartitionSupplier(m.Table)
	if err != nil || m.Schema == "" || !ok {
		d.passedOver = append(d.passedOver, fmt.Sprintf("%s at %s: %.100q", msg.Prefix, msg.LSN, msg.Content))
		return false, nil
	}
	c := d.reset(event.OpTruncate, &relation{schema: m.Schema, table: m.Table}, msg.LSN)
	d.marks.truncatedPartition(int64(supplier))
	return true, emit(c)
}
