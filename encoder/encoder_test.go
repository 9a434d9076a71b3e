package encoder_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
)

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	// The encoder starts first and waits for events.
	r := e.start(encoder.Config{}, nil)
	a := e.insert(1, "A-1", "Red wool scarf", "A warm scarf knitted from merino wool.")
	b := e.insert(1, "B-1", "Steel chef knife", "Forged blade, 20 cm.")
	c := e.insert(2, "C-1", "Garden hose", "Twenty metres, kink free.")
	e.waitConverged(e.model)
	if got := r.texts(); got != 3 {
		t.Fatalf("embedded %v texts for 3 inserts", got)
	}

	// A price-only change embeds nothing, but the stored LSN moves forward.
	before := e.vectors(e.model)[a.key].lsn
	e.update(a.key, "price = price + 1")
	eventually(t, time.Minute, func() string {
		if r.events("skipped_unchanged") < 1 {
			return "price change not processed yet"
		}
		return ""
	})
	if got := r.texts(); got != 3 {
		t.Fatalf("a price-only update embedded: %v texts", got)
	}
	if after := e.vectors(e.model)[a.key].lsn; after == before {
		t.Fatalf("source_lsn did not move on an unchanged text: %s", after)
	}

	// A rename re-embeds.
	e.update(b.key, "name = $3", "Stainless chef knife")
	e.waitConverged(e.model)
	if got := r.texts(); got != 4 {
		t.Fatalf("rename: %v texts embedded, want 4", got)
	}

	// A delete leaves a tombstone, and the old insert replayed (beyond the duplicate
	// window: another Msg-Id) does not bring the product back.
	del := e.delete(c.key)
	eventually(t, time.Minute, func() string {
		if v := e.vectors(e.model)[c.key]; !v.deleted || v.hasVector {
			return "no tombstone yet"
		}
		return ""
	})
	old := e.change(event.OpInsert, c, del.Source.CommitLSN-1)
	data, _ := json.Marshal(old)
	replay := e.publishRaw("products.2.insert", data, "replayed-insert")
	// Handled, not just published: the replay and everything before it are acked (the
	// encoder acks after its write commits), so the check below cannot run before it.
	e.handled(replay)
	if v := e.vectors(e.model)[c.key]; !v.deleted || v.hasVector {
		t.Fatal("a replayed insert resurrected a deleted product")
	}
	if why := e.converged(e.model); why != "" {
		t.Fatal(why)
	}
	if r.events("deleted") != 1 {
		t.Fatalf("deleted events: %v", r.events("deleted"))
	}
	r.stop(t)
}

func TestCoalesce(t *testing.T) {
	e := newEnv(t)
	p := e.insert(1, "K-1", "Kettle", "Boils water.")
	e.update(p.key, "name = $3", "Electric kettle")
	e.update(p.key, "name = $3", "Electric kettle 1.7 l")
	// Published out of order too: an older event after a newer one in the same batch.
	older := e.change(event.OpUpdate, product{key: p.key, sku: "K-1", name: "Stale kettle", attributes: "{}"}, 1)
	data, _ := json.Marshal(older)
	last := e.publishRaw("products.1.update", data, "stale")

	r := e.start(encoder.Config{Workers: 1, Batch: 100, BatchWait: time.Second}, nil)
	e.waitConverged(e.model)
	// Converged once the batch committed; its events are counted after that, before the acks.
	e.handled(last)
	if got := r.texts(); got != 1 {
		t.Fatalf("embedded %v texts for one product", got)
	}
	if got := r.events("coalesced"); got != 3 {
		t.Fatalf("coalesced %v events, want 3", got)
	}
}

func TestUnchangedToastReadsTheRow(t *testing.T) {
	e := newEnv(t)
	long := strings.Repeat("A very long description that PostgreSQL stores out of line. ", 200)
	p := e.insert(1, "T-1", "Tent", long)
	r := e.start(encoder.Config{}, nil)
	e.waitConverged(e.model)

	// A rename arrives as pgoutput sends it when the description was not touched: without the
	// description, which is named as unchanged TOAST. The encoder must read it from the table.
	q, err := scanProduct(e.pool.QueryRow(e.ctx, `UPDATE products SET name = 'Tent for three'
		WHERE supplier_id = $1 AND id = $2 `+returning, p.key.SupplierID, p.key.ID))
	if err != nil {
		t.Fatal(err)
	}
	ch := e.change(event.OpUpdate, q, e.lsn())
	ch.After = slices.DeleteFunc(ch.After, func(c event.Column) bool { return c.Name == "description" })
	ch.UnchangedToast = []string{"description"}
	e.publish(ch)
	e.waitConverged(e.model)
	v := e.vectors(e.model)[p.key]
	if want := encoder.ContentHash(e.model, encoder.Text("Tent for three", long, json.RawMessage(q.attributes))); string(v.hash) != string(want) {
		t.Fatal("vector is not of the new name with the stored description")
	}
	if got := r.texts(); got != 2 {
		t.Fatalf("%v texts embedded, want 2", got)
	}
	r.stop(t)
}

func TestPoisonGoesToDLQ(t *testing.T) {
	e := newEnv(t)
	r := e.start(encoder.Config{}, nil)
	e.publishRaw("products.1.insert", []byte("{not json"), "garbage")
	e.publishRaw("products.1.update", []byte(`{"op":"update","after":{"name":"x"},"source":{"commit_lsn":"0/10"}}`), "keyless")
	p := e.insert(1, "P-1", "Pillow", "Soft.")
	_ = p
	e.waitConverged(e.model)

	// The dead-letter stream is created with the first dead letter, which a worker may write
	// after another has applied P-1.
	var dlq jetstream.Stream
	eventually(t, time.Minute, func() string {
		var err error
		if dlq, err = e.js.Stream(e.ctx, encoder.DLQStreamName); err != nil {
			return err.Error()
		}
		info, err := dlq.Info(e.ctx)
		if err != nil {
			return err.Error()
		}
		// The counter moves once the copy is stored.
		if n := r.events("dead_lettered"); info.State.Msgs != 2 || n != 2 {
			return fmt.Sprintf("%d dead letters stored, %v counted: want 2", info.State.Msgs, n)
		}
		return ""
	})
	for seq := uint64(1); seq <= 2; seq++ {
		m, err := dlq.GetMsg(e.ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(encoder.HeaderError) == "" || m.Header.Get(encoder.HeaderStreamSeq) == "" ||
			!strings.HasPrefix(m.Header.Get(encoder.HeaderSubject), "products.1.") || !strings.HasPrefix(m.Subject, "products_dlq.1.") {
			t.Fatalf("dead letter %d: subject %s headers %v", seq, m.Subject, m.Header)
		}
	}
	// Terminated, not pending: the consumer moved on.
	cons, err := e.js.Consumer(e.ctx, event.Stream, encoder.DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, func() string {
		info, err := cons.Info(e.ctx)
		if err != nil {
			return err.Error()
		}
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return "messages still pending"
		}
		return ""
	})
}

func TestTruncateTombstones(t *testing.T) {
	e := newEnv(t)
	r := e.start(encoder.Config{}, nil)
	a := e.insert(1, "X-1", "Lamp", "Bright.")
	b := e.insert(2, "Y-1", "Desk", "Oak.")
	e.waitConverged(e.model)
	if _, err := e.pool.Exec(e.ctx, "TRUNCATE products_s1"); err != nil {
		t.Fatal(err)
	}
	lsn := e.lsn()
	tr := event.Change{Op: event.OpTruncate, Schema: "public", Table: "products_s1",
		Source: event.Source{LSN: lsn, CommitLSN: lsn}}
	data, _ := json.Marshal(tr)
	e.publishRaw("products.all.truncate", data, "truncate") // as the replicator publishes a partition truncate
	// An insert from before the truncate, replayed after it, stays dead, once it is handled
	// (acked after the write): with two workers the truncate alone could satisfy a wait for
	// convergence while the replay is still in the other worker's hands.
	old := e.change(event.OpInsert, a, lsn-1)
	data, _ = json.Marshal(old)
	e.handled(e.publishRaw("products.1.insert", data, "old-insert"))
	if why := e.converged(e.model); why != "" {
		t.Fatal(why)
	}
	if v := e.vectors(e.model); len(v) != 2 || !v[a.key].deleted || v[a.key].hasVector || v[b.key].deleted {
		t.Fatalf("after truncating supplier 1: %+v", v)
	}
	if got := r.events("truncated"); got != 1 {
		t.Fatalf("truncated events: %v, want 1", got)
	}
	r.stop(t)
}

func TestSharedConsumerTwoEncoders(t *testing.T) {
	e := newEnv(t)
	r1 := e.start(encoder.Config{Batch: 50}, nil)
	r2 := e.start(encoder.Config{Batch: 50}, nil)
	var keys []event.Key
	for i := range 300 {
		p := e.insert(int64(1+i%2), "S-"+itoa(i), "Item "+itoa(i), "Thing number "+itoa(i))
		keys = append(keys, p.key)
	}
	changes := e.churn(keys)
	e.handled(uint64(len(keys) + changes))
	if why := e.converged(e.model); why != "" {
		t.Fatal(why)
	}
	// Every event was handled once by one of the two (nothing was redelivered), and both
	// had a share.
	n1, n2 := handledEvents(r1), handledEvents(r2)
	t.Logf("work split: %v / %v events", n1, n2)
	if n1+n2 != float64(len(keys)+changes) {
		t.Fatalf("%v + %v events handled, want %d", n1, n2, len(keys)+changes)
	}
	if n1 == 0 || n2 == 0 {
		t.Fatalf("one encoder received nothing: %v / %v events", n1, n2)
	}
	r1.stop(t)
	r2.stop(t)
}

// handledEvents sums an encoder's events over every result.
func handledEvents(r *running) float64 {
	n := 0.0
	for _, res := range []string{"embedded", "skipped_unchanged", "coalesced", "deleted", "truncated", "gone", "dead_lettered"} {
		n += r.events(res)
	}
	return n
}

func itoa(i int) string { return strconv.Itoa(i) }

// The database rejecting one event's row fails its batch: the batch is retried event by
// event, the others land, and the bad one ends in the DLQ after MaxDeliver.
func TestDatabaseRejectIsIsolated(t *testing.T) {
	t.Parallel() // waits on redeliveries and subprocesses, with servers of its own
	e := newEnv(t)
	for i := range 10 {
		e.insert(1, "R-"+itoa(i), "Rug "+itoa(i), "Woven.")
	}
	bad := e.change(event.OpInsert, product{key: event.Key{SupplierID: 1, ID: 999999},
		sku: strings.Repeat("x", 150), name: "Too long a SKU", attributes: "{}"}, e.lsn())
	e.publish(bad)
	for i := range 10 {
		e.insert(2, "R-"+itoa(i), "Rope "+itoa(i), "Braided.")
	}
	r := e.start(encoder.Config{Workers: 1, MaxDeliver: 3, AckWait: 5 * time.Second}, nil)
	eventually(t, 2*time.Minute, func() string {
		if r.events("dead_lettered") != 1 {
			return "not dead-lettered yet"
		}
		return e.converged(e.model)
	})
	if _, ok := e.vectors(e.model)[bad.Key]; ok {
		t.Fatal("the rejected event left a row")
	}
	// The encoder goes on writing after the rolled-back batches.
	e.insert(1, "R-last", "Last rug", "")
	e.waitConverged(e.model)
	r.stop(t)
}

// An update that changes the key (a product moved to another supplier) tombstones the old key.
func TestKeyChangeTombstonesOldKey(t *testing.T) {
	e := newEnv(t)
	r := e.start(encoder.Config{}, nil)
	p := e.insert(1, "M-1", "Mirror", "Round.")
	e.waitConverged(e.model)
	moved, err := scanProduct(e.pool.QueryRow(e.ctx, `UPDATE products SET supplier_id = 2
		WHERE supplier_id = $1 AND id = $2 `+returning, p.key.SupplierID, p.key.ID))
	if err != nil {
		t.Fatal(err)
	}
	ch := e.change(event.OpUpdate, moved, e.lsn())
	ch.Before = event.Row{{Name: "supplier_id", Value: []byte("1")}, {Name: "id", Value: []byte(itoa(int(p.key.ID)))}}
	e.publish(ch)
	e.waitConverged(e.model)
	if v := e.vectors(e.model)[p.key]; !v.deleted {
		t.Fatal("old key still live")
	}
	r.stop(t)
}

// encode may start before replicate: it waits for the stream, not ready meanwhile.
func TestWaitsForTheStream(t *testing.T) {
	e := newEnv(t)
	if err := e.js.DeleteStream(e.ctx, event.Stream); err != nil {
		t.Fatal(err)
	}
	r := e.start(encoder.Config{}, nil)
	time.Sleep(300 * time.Millisecond) // several looks at the missing stream
	if r.enc.Ready() == nil {
		t.Fatal("ready without a stream")
	}
	select {
	case <-r.done:
		t.Fatalf("Run returned without a stream: %v", r.err)
	default:
	}
	if _, err := e.js.CreateStream(e.ctx, jetstream.StreamConfig{Name: event.Stream, Subjects: []string{"products.>"},
		Storage: jetstream.FileStorage, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	e.insert(1, "W-1", "Watering can", "Ten litres.")
	e.waitConverged(e.model)
	if err := r.enc.Ready(); err != nil {
		t.Fatal(err)
	}
	r.stop(t)
}
