package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestEncodeDebeziumEnvelope: `replicate --format debezium` and `encode` on the same stream
// end with a current vector for every product, a tombstone for every deleted one, and
// nothing dead-lettered. An update that leaves a TOASTed description untouched arrives with
// Debezium's placeholder: the vector must still be of the real description. A TRUNCATE of one
// supplier's partition tombstones that supplier's vectors.
func TestEncodeDebeziumEnvelope(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 3*time.Minute)
	e.replicate(t, "--format", "debezium").streaming(t)
	e.start(t, "encode", "--http-addr=", "--batch-wait", "100ms", "--max-deliver", "2", "--ack-wait", "2s")

	e.exec(t, `INSERT INTO products (supplier_id, sku, name, description, price, currency, attributes)
		SELECT 1 + g % 2, 'DBZ-' || g, (ARRAY['Nordby oak table', 'Kaska wool throw', 'Umbra floor lamp'])[1 + g % 3] || ' ' || g,
		       'Solid oak, oiled by hand in Malmö – seats six; felt pads included. Item ' || g || '.', 10 + g, 'EUR',
		       jsonb_build_object('brand', 'Nordby', 'color', (ARRAY['natural', 'smoke', 'white'])[1 + g % 3], 'width_cm', 100 + g)
		FROM generate_series(1, 60) g`)
	// Random text does not compress, so it is stored out of line and an update of another
	// column leaves it unchanged TOAST.
	e.exec(t, `INSERT INTO products (supplier_id, sku, name, description)
		SELECT 2, 'DBZ-TOAST', 'Archive box', string_agg(md5(g::text), ' ') FROM generate_series(1, 2000) g`)
	e.exec(t, `UPDATE products SET price = 5 WHERE sku = 'DBZ-TOAST'`)
	e.exec(t, `UPDATE products SET name = name || ' (2025 edition)' WHERE sku IN ('DBZ-1', 'DBZ-2', 'DBZ-3')`)
	e.exec(t, `UPDATE products SET price = price + 1 WHERE sku IN ('DBZ-4', 'DBZ-5')`)
	e.exec(t, `DELETE FROM products WHERE sku IN ('DBZ-6', 'DBZ-7', 'DBZ-8')`)
	// Another supplier's partition: a delete of the old key and an insert of the new one.
	e.exec(t, `UPDATE products SET supplier_id = 3 - supplier_id WHERE sku = 'DBZ-9'`)
	s, err := js.Stream(ctx, event.Stream)
	if err != nil {
		t.Fatal(err)
	}
	// settle inserts a product of supplier 1 and waits until the encoder has handled every
	// event up to it.
	settle := func(sku string) {
		t.Helper()
		e.exec(t, fmt.Sprintf(`INSERT INTO products (supplier_id, sku, name) VALUES (1, '%s', 'Marker %s')`, sku, sku))
		var key event.Key
		if err := e.pool.QueryRow(ctx, `SELECT supplier_id, id FROM products WHERE sku = $1`, sku).Scan(&key.SupplierID, &key.ID); err != nil {
			t.Fatal(err)
		}
		var seq uint64
		testenv.WaitFor(t, sku+" in the stream", time.Minute, func() bool {
			m, err := s.GetLastMsgForSubject(ctx, "products.1.insert")
			if err != nil {
				return false
			}
			c, err := event.Decode(m.Data)
			seq = m.Sequence
			return err == nil && c.Key == key
		})
		testenv.WaitFor(t, "the encoder to settle every event up to "+sku, time.Minute, func() bool {
			c, err := js.Consumer(ctx, event.Stream, "encoders")
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			return err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0
		})
	}
	// A TRUNCATE of one supplier's partition, which PostgreSQL does not publish through the
	// partition root: the trigger's message must bring it, or supplier 2's vectors stay live.
	// Every product of supplier 2 has its vector first, so each must become a tombstone.
	settle("DBZ-MID")
	var truncated int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM products WHERE supplier_id = 2`).Scan(&truncated); err != nil || truncated == 0 {
		t.Fatalf("supplier 2 has %d products (%v)", truncated, err)
	}
	e.exec(t, `TRUNCATE products_s2`)
	settle("DBZ-LAST")

	// The stream holds the Debezium envelope, and each message's id is its event's position.
	_, events := readStream(t, js)
	if len(events) < 70 {
		t.Fatalf("stream holds %d events, want at least 70", len(events))
	}
	for seq := uint64(1); seq <= uint64(len(events)); seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(m.Data, []byte(`{"before":`)) {
			t.Fatalf("message %d is not in the Debezium envelope: %s", seq, m.Data)
		}
	}

	if dlq, err := js.Stream(ctx, encoder.DLQStreamName); err == nil {
		info, err := dlq.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 0 {
			m, _ := dlq.GetMsg(ctx, info.State.FirstSeq)
			t.Fatalf("%d events dead-lettered, the first: %s %s", info.State.Msgs, m.Header.Get(encoder.HeaderError), m.Data)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatal(err)
	}

	checkVectorsMatchProducts(ctx, t, e, 4+truncated) // DBZ-6, 7, 8, DBZ-9's old key and supplier 2
}

// checkVectorsMatchProducts checks that every product has a live vector of its current text
// and that the only other vectors are tombstones, wantDeleted of them.
func checkVectorsMatchProducts(ctx context.Context, t *testing.T, e *replEnv, wantDeleted int) {
	t.Helper()
	emb, err := encoder.NewHash(384)
	if err != nil {
		t.Fatal(err)
	}
	want := map[event.Key][]byte{}
	rows, err := e.pool.Query(ctx, `SELECT supplier_id, id, name, coalesce(description, ''), attributes::text FROM products`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k event.Key
		var name, desc string
		var attrs *string
		if err := rows.Scan(&k.SupplierID, &k.ID, &name, &desc, &attrs); err != nil {
			t.Fatal(err)
		}
		var raw json.RawMessage
		if attrs != nil {
			raw = json.RawMessage(*attrs)
		}
		want[k] = encoder.ContentHash(emb.Model(), encoder.Text(name, desc, raw))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = e.pool.Query(ctx, `SELECT supplier_id, product_id, content_hash, deleted FROM product_embeddings WHERE model = $1`, emb.Model())
	if err != nil {
		t.Fatal(err)
	}
	live, deleted := 0, 0
	for rows.Next() {
		var k event.Key
		var hash []byte
		var gone bool
		if err := rows.Scan(&k.SupplierID, &k.ID, &hash, &gone); err != nil {
			t.Fatal(err)
		}
		h, exists := want[k]
		switch {
		case gone && exists:
			t.Errorf("product %+v exists but its vector is a tombstone", k)
		case gone:
			deleted++
		case !exists:
			t.Errorf("a live vector for %+v, which is not a product", k)
		case !bytes.Equal(hash, h):
			t.Errorf("product %+v: the vector is not of its current text", k)
		default:
			live++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if live != len(want) || deleted != wantDeleted {
		t.Errorf("%d live vectors for %d products, %d tombstones; want %d", live, len(want), deleted, wantDeleted)
	}
}
