package event_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestFollow runs the README's example consumer against a real nats-server: events of both
// envelopes, redelivered and replayed old ones, a truncate, a moved key, an unchanged TOAST
// column, an event of a kind it does not know, a malformed one, and snapshot epochs: one
// that closes (dropping a product whose delete was lost) and one that does not.
func TestFollow(t *testing.T) {
	srv := testenv.NATS(t)
	js := testenv.JetStream(t, srv.URL())
	ctx := testenv.Context(t, time.Minute)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PRODUCTS", Subjects: []string{"products.>"}}); err != nil {
		t.Fatal(err)
	}
	raw := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	row := func(k event.Key, name, description string) event.Row {
		r := event.Row{{Name: "id", Value: raw(k.ID)}, {Name: "supplier_id", Value: raw(k.SupplierID)}, {Name: "name", Value: raw(name)}}
		if description != "" {
			r = append(r, event.Column{Name: "description", Value: raw(description)})
		}
		return r
	}
	change := func(op event.Op, k event.Key, lsn event.LSN, after event.Row) event.Change {
		return event.Change{Op: op, Schema: "public", Table: "products", Key: k, After: after,
			Source: event.Source{Slot: "tidemark", LSN: lsn - 8, CommitLSN: lsn, XID: 700, CommitTS: time.Now()}, TsMs: time.Now().UnixMilli()}
	}
	seq := 0
	publish := func(data []byte) {
		seq++
		// Distinct message ids, so that JetStream stores the replays too.
		if _, err := js.Publish(ctx, "products.1.x", data, jetstream.WithMsgID(fmt.Sprint(seq))); err != nil {
			t.Fatal(err)
		}
	}
	native := func(c event.Change) { publish(c.AppendJSON(nil)) }
	debezium := func(c event.Change) { publish(c.AppendDebezium(nil)) }

	k1, k2, k3, k4, k5 := event.Key{SupplierID: 1, ID: 1}, event.Key{SupplierID: 1, ID: 2}, event.Key{SupplierID: 1, ID: 3}, event.Key{SupplierID: 2, ID: 3}, event.Key{SupplierID: 1, ID: 5}
	native(change(event.OpInsert, k5, 90, row(k5, "Gone with the truncate", "")))
	debezium(change(event.OpTruncate, event.Key{}, 95, nil))
	native(change(event.OpInsert, k5, 92, row(k5, "Replayed from before the truncate", ""))) // dropped
	native(change(event.OpInsert, k1, 100, row(k1, "Nordby oak table", "Solid oak, oiled by hand in Malmö.")))
	debezium(change(event.OpInsert, k2, 110, row(k2, "Kaska wool throw", "")))
	toast := change(event.OpUpdate, k1, 120, row(k1, "Nordby oak table, 2025", ""))
	toast.UnchangedToast = []string{"description"}
	debezium(toast)
	native(change(event.OpUpdate, k1, 105, row(k1, "Stale name", "Stale text"))) // dropped
	native(change(event.OpInsert, k3, 130, row(k3, "Umbra floor lamp", "")))
	del := change(event.OpDelete, k2, 140, nil)
	del.Before = row(k2, "", "")[:2]
	debezium(del)
	native(change(event.OpInsert, k2, 135, row(k2, "Resurrected", ""))) // dropped
	publish([]byte(`{"op":"schema_change","supplier_id":1,"source":{"commit_lsn":"0/FF"}}`))
	publish([]byte(`{"op":"insert","key":`))
	moved := change(event.OpUpdate, k4, 150, row(k4, "Umbra floor lamp", ""))
	moved.Before = row(k3, "", "")[:2]
	debezium(moved)
	// A snapshot epoch of supplier 1: k6 was deleted while the deletes were lost, so only the
	// close tells; k7 is inserted by a live transaction during the epoch; supplier 2's epoch
	// never closes, so k4 stays.
	k6, k7 := event.Key{SupplierID: 1, ID: 6}, event.Key{SupplierID: 1, ID: 7}
	native(change(event.OpInsert, k6, 160, row(k6, "Deleted while nothing replicated", "")))
	epoch := func(op event.Op, supplier int64, lsn, open event.LSN) event.Change {
		c := change(op, event.Key{SupplierID: supplier}, lsn, nil)
		c.Epoch = &event.Epoch{ID: fmt.Sprint("e", supplier, open), SupplierID: supplier, OpenLSN: open}
		return c
	}
	debezium(epoch(event.OpEpochOpen, 1, 200, 199))
	native(epoch(event.OpEpochOpen, 2, 201, 200))
	native(change(event.OpSnapshot, k1, 210, row(k1, "Nordby oak table, 2025", "")))
	native(change(event.OpInsert, k7, 215, row(k7, "Inserted during the epoch", "")))
	native(epoch(event.OpEpochClose, 1, 220, 199))

	products := map[event.Key]event.Row{}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- follow(fctx, js.Conn(), products) }()
	testenv.WaitFor(t, "follow to settle every message", 30*time.Second, func() bool {
		c, err := js.Consumer(ctx, "PRODUCTS", "my-catalogue-copy")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream == uint64(seq) && info.NumAckPending == 0
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	want := map[event.Key]string{
		k1: `{"id":1,"supplier_id":1,"name":"Nordby oak table, 2025"}`,
		k4: `{"id":3,"supplier_id":2,"name":"Umbra floor lamp"}`,
		k7: `{"id":7,"supplier_id":1,"name":"Inserted during the epoch"}`,
	}
	for k, r := range products {
		if got, _ := json.Marshal(r); string(got) != want[k] {
			t.Errorf("product %+v: %s, want %s", k, got, want[k])
		}
	}
	if len(products) != len(want) {
		t.Errorf("%d products, want %d: %v", len(products), len(want), products)
	}
}
