package encoder_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
)

// TestEpochCloseTombstonesWhatItDidNotCarry: a product deleted while its delete was lost keeps
// its vector until a snapshot epoch of its supplier closes; then it is tombstoned, while the
// products the epoch carried — one by a snapshot row that reaches the encoder only after the
// close, one inserted live during the epoch — stay, and so do the products of another
// supplier and those of an epoch that never closes.
func TestEpochCloseTombstonesWhatItDidNotCarry(t *testing.T) {
	e := newEnv(t)
	r := e.start(encoder.Config{}, nil)
	a := e.insert(1, "EP-A", "Lamp", "Bright.")
	b := e.insert(1, "EP-B", "Desk", "Oak.")
	c := e.insert(2, "EP-C", "Chair", "Pine.")
	e.waitConverged(e.model)

	// b's delete never reaches the stream.
	if _, err := e.pool.Exec(e.ctx, "DELETE FROM products WHERE supplier_id = 1 AND id = $1", b.key.ID); err != nil {
		t.Fatal(err)
	}
	if why := e.converged(e.model); why == "" {
		t.Fatal("the vector table matches products without the delete: the test shows nothing")
	}
	epoch := func(op event.Op, supplier int64, open event.LSN) event.Change {
		lsn := e.lsn()
		ch := event.Change{Op: op, Schema: "public", Table: "products", Key: event.Key{SupplierID: supplier},
			Epoch:  &event.Epoch{ID: fmt.Sprint("e", supplier), SupplierID: supplier, OpenLSN: open, Rows: 1},
			Source: event.Source{Slot: "tidemark", LSN: lsn, CommitLSN: lsn, CommitTS: time.Now(), XID: 1}}
		if op == event.OpEpochOpen {
			ch.Epoch.OpenLSN, ch.Epoch.Rows = lsn, 0
		}
		return ch
	}
	open1 := epoch(event.OpEpochOpen, 1, 0)
	e.publish(open1)
	e.publish(epoch(event.OpEpochOpen, 2, 0)) // never closed
	d := e.insert(1, "EP-D", "Rug", "Wool.")  // live, during the epoch
	snapA := e.change(event.OpSnapshot, a, e.lsn())
	e.publish(epoch(event.OpEpochClose, 1, open1.Epoch.OpenLSN))
	// The snapshot row of a comes after the close here, as it can with several encoders.
	e.publish(snapA)
	// An insert of b from before the epoch, replayed, does not bring it back.
	replay := e.publish(e.change(event.OpInsert, b, open1.Epoch.OpenLSN-1))

	e.waitConverged(e.model)
	// Converged can hold before the replay is handled (the close alone tombstones b), and the
	// events are counted after their batch commits: wait until the replay is acked.
	e.handled(replay)
	if why := e.converged(e.model); why != "" {
		t.Fatal(why)
	}
	vs := e.vectors(e.model)
	if v := vs[b.key]; !v.deleted || v.lsn != open1.Epoch.OpenLSN.String() {
		t.Errorf("b after the close: %+v, want a tombstone at the open's LSN %s", v, open1.Epoch.OpenLSN)
	}
	for _, k := range []event.Key{a.key, c.key, d.key} {
		if v := vs[k]; v.deleted || !v.hasVector {
			t.Errorf("product %v was tombstoned: %+v", k, v)
		}
	}
	if n := r.events("epoch"); n != 3 {
		t.Errorf("epoch events counted: %v, want 3", n)
	}
	r.stop(t)
}
