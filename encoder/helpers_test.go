package encoder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is a migrated database with suppliers 1 and 2, and a JetStream server with the
// PRODUCTS stream, as tidemark replicate would leave them.
type env struct {
	t       *testing.T
	ctx     context.Context
	pgURL   string
	natsURL string
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	model   string // the model of the embedder start runs when given none
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := testenv.Context(t, 4*time.Minute)
	url := testenv.Database(t)
	pool := testenv.Migrated(ctx, t, url)
	for _, id := range []int32{1, 2} {
		testenv.AddSupplier(ctx, t, pool, id, fmt.Sprintf("supplier %d", id))
	}
	ns := testenv.NATS(t)
	js := testenv.JetStream(t, ns.URL())
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: event.Stream, Subjects: []string{"products.>"},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, pgURL: url, natsURL: ns.URL(), pool: pool, js: js, model: hashEmbedder(t).Model()}
}

// product is a row of products as the tests see it.
type product struct {
	key         event.Key
	sku, name   string
	description *string
	price       string
	attributes  string
}

func (p product) text() string {
	d := ""
	if p.description != nil {
		d = *p.description
	}
	return encoder.Text(p.name, d, json.RawMessage(p.attributes))
}

const returning = `RETURNING supplier_id, id, sku, name, description, coalesce(price::text, ''), attributes::text`

func scanProduct(row pgx.Row) (product, error) {
	var p product
	err := row.Scan(&p.key.SupplierID, &p.key.ID, &p.sku, &p.name, &p.description, &p.price, &p.attributes)
	return p, err
}

// change builds the event replicate would publish for p.
func (e *env) change(op event.Op, p product, lsn event.LSN) event.Change {
	ch := event.Change{
		Op: op, Schema: "public", Table: "products", Key: p.key,
		Source: event.Source{Slot: "tidemark", LSN: lsn, CommitLSN: lsn, CommitTS: time.Now(), XID: 1},
		TsMs:   time.Now().UnixMilli(),
	}
	if op != event.OpDelete {
		js := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
		ch.After = event.Row{
			{Name: "id", Value: js(p.key.ID)}, {Name: "supplier_id", Value: js(p.key.SupplierID)},
			{Name: "sku", Value: js(p.sku)}, {Name: "name", Value: js(p.name)},
			{Name: "description", Value: js(p.description)}, {Name: "price", Value: js(p.price)},
			{Name: "attributes", Value: json.RawMessage(p.attributes)},
		}
	} else {
		ch.Before = event.Row{{Name: "supplier_id", Value: []byte(fmt.Sprint(p.key.SupplierID))}, {Name: "id", Value: []byte(fmt.Sprint(p.key.ID))}}
	}
	return ch
}

// write runs one statement on products (RETURNING the row), then publishes its event with
// the WAL position after the commit as its LSN, so LSNs grow as they would from the slot.
func (e *env) write(op event.Op, sql string, args ...any) (product, event.Change) {
	e.t.Helper()
	p, err := scanProduct(e.pool.QueryRow(e.ctx, sql+" "+returning, args...))
	if err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	lsn := e.lsn()
	ch := e.change(op, p, lsn)
	e.publish(ch)
	return p, ch
}

func (e *env) lsn() event.LSN {
	e.t.Helper()
	var s string
	if err := e.pool.QueryRow(e.ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		e.t.Fatal(err)
	}
	lsn, err := event.ParseLSN(s)
	if err != nil {
		e.t.Fatal(err)
	}
	return lsn
}

func (e *env) insert(supplier int64, sku, name, description string) product {
	e.t.Helper()
	p, _ := e.write(event.OpInsert, `INSERT INTO products (supplier_id, sku, name, description, price, attributes)
		VALUES ($1, $2, $3, $4, 9.99, '{"brand": "Acme", "weight_g": 120}')`, supplier, sku, name, description)
	return p
}

func (e *env) update(k event.Key, set string, args ...any) (product, event.Change) {
	e.t.Helper()
	args = append([]any{k.SupplierID, k.ID}, args...)
	return e.write(event.OpUpdate, "UPDATE products SET "+set+", updated_at = now() WHERE supplier_id = $1 AND id = $2", args...)
}

func (e *env) delete(k event.Key) event.Change {
	e.t.Helper()
	p, ch := e.write(event.OpDelete, "DELETE FROM products WHERE supplier_id = $1 AND id = $2", k.SupplierID, k.ID)
	_ = p
	return ch
}

// publish sends ch as replicate does: subject products.<supplier>.<op>, Msg-Id from its LSN.
// publish publishes ch as the replicator would and returns its stream sequence.
func (e *env) publish(ch event.Change) uint64 {
	e.t.Helper()
	data, err := json.Marshal(ch)
	if err != nil {
		e.t.Fatal(err)
	}
	id := fmt.Sprintf("%s-%d-%d-%d", ch.Source.CommitLSN, ch.Source.Seq, ch.Key.SupplierID, ch.Key.ID)
	return e.publishRaw(fmt.Sprintf("products.%d.%s", ch.Key.SupplierID, ch.Op), data, id)
}

// publishRaw publishes data and returns its stream sequence; a duplicate fails the test.
func (e *env) publishRaw(subject string, data []byte, msgID string) uint64 {
	e.t.Helper()
	ack, err := e.js.Publish(e.ctx, subject, data, jetstream.WithMsgID(msgID))
	if err != nil {
		e.t.Fatalf("publish %s: %v", subject, err)
	}
	if ack.Duplicate {
		e.t.Fatalf("publish %s: a duplicate of Msg-Id %s", subject, msgID)
	}
	return ack.Sequence
}

// handled waits until the encoders' consumer acked every message up to stream sequence seq:
// the encoders committed what it and everything before it asked for.
func (e *env) handled(seq uint64) {
	e.t.Helper()
	cons, err := e.js.Consumer(e.ctx, event.Stream, encoder.DefaultConsumer)
	if err != nil {
		e.t.Fatal(err)
	}
	eventually(e.t, time.Minute, func() string {
		info, err := cons.Info(e.ctx)
		if err != nil {
			return err.Error()
		}
		if info.AckFloor.Stream < seq {
			return fmt.Sprintf("acked up to stream sequence %d, want %d", info.AckFloor.Stream, seq)
		}
		return ""
	})
}

// running is an encoder running in this process.
type running struct {
	enc    *encoder.Encoder
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	<-r.done
	if r.err != nil {
		t.Errorf("encoder Run: %v", r.err)
	}
}

func (r *running) events(result string) float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "tidemark_encoder_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func (r *running) texts() float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "tidemark_embed_texts_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func testLog(t *testing.T) *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("TIDEMARK_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// start runs an encoder with cfg (test-friendly defaults filled in) and emb.
func (e *env) start(cfg encoder.Config, emb encoder.Embedder) *running {
	e.t.Helper()
	if cfg.BatchWait == 0 {
		cfg.BatchWait = 100 * time.Millisecond
	}
	if cfg.NakDelay == 0 {
		cfg.NakDelay = 50 * time.Millisecond
	}
	if cfg.StreamWait == 0 {
		cfg.StreamWait = 100 * time.Millisecond
	}
	if emb == nil {
		emb = hashEmbedder(e.t)
	}
	reg := prometheus.NewRegistry()
	store, err := encoder.OpenStore(e.ctx, e.pool)
	if err != nil {
		e.t.Fatal(err)
	}
	enc, err := encoder.New(cfg, e.js, store, emb, testLog(e.t), reg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	r := &running{enc: enc, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = enc.Run(ctx)
	}()
	e.t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func hashEmbedder(t *testing.T) *encoder.Hash {
	h, err := encoder.NewHash(encoder.DefaultDim)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// vectorRow is a row of product_embeddings.
type vectorRow struct {
	key       event.Key
	hash      []byte
	deleted   bool
	hasVector bool
	lsn       string
}

func (e *env) vectors(model string) map[event.Key]vectorRow {
	e.t.Helper()
	rows, err := e.pool.Query(e.ctx, `SELECT supplier_id, product_id, content_hash, deleted, embedding IS NOT NULL, source_lsn::text
		FROM product_embeddings WHERE model = $1`, model)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[event.Key]vectorRow{}
	var v vectorRow
	if _, err := pgx.ForEachRow(rows, []any{&v.key.SupplierID, &v.key.ID, &v.hash, &v.deleted, &v.hasVector, &v.lsn}, func() error {
		out[v.key] = v
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) products() map[event.Key]product {
	e.t.Helper()
	rows, err := e.pool.Query(e.ctx, `SELECT supplier_id, id, sku, name, description, coalesce(price::text, ''), attributes::text FROM products`)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[event.Key]product{}
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			e.t.Fatal(err)
		}
		out[p.key] = p
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// converged says why the vector table does not match the product table yet ("" when it does):
// every product has a live vector of its current text, every other vector is a tombstone.
func (e *env) converged(model string) string {
	vs := e.vectors(model)
	ps := e.products()
	for k, p := range ps {
		v, ok := vs[k]
		switch {
		case !ok:
			return fmt.Sprintf("product %v has no vector", k)
		case v.deleted || !v.hasVector:
			return fmt.Sprintf("product %v is tombstoned", k)
		case string(v.hash) != string(encoder.ContentHash(model, p.text())):
			return fmt.Sprintf("product %v has a vector of another text", k)
		}
	}
	for k, v := range vs {
		if _, ok := ps[k]; !ok && (!v.deleted || v.hasVector) {
			return fmt.Sprintf("deleted product %v has a live vector", k)
		}
	}
	return ""
}

// churn changes keys in turn: renames the first of every five, deletes the second, reprices
// the third (a change whose text is unchanged) and leaves the other two. It returns the number
// of changes.
func (e *env) churn(keys []event.Key) int {
	changes := 0
	for i, k := range keys {
		switch i % 5 {
		case 0:
			e.update(k, "name = name || ' v2'")
		case 1:
			e.delete(k)
		case 2:
			e.update(k, "price = 1")
		default:
			continue
		}
		changes++
	}
	return changes
}

// deadLetter returns the message at seq of the dead-letter stream.
func (e *env) deadLetter(seq uint64) *jetstream.RawStreamMsg {
	e.t.Helper()
	dlq, err := e.js.Stream(e.ctx, encoder.DLQStreamName)
	if err != nil {
		e.t.Fatal(err)
	}
	m, err := dlq.GetMsg(e.ctx, seq)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// deadLetteredID is the product id of a dead-lettered event.
func deadLetteredID(m *jetstream.RawStreamMsg) int64 {
	var ch struct {
		Key struct {
			ID int64 `json:"id"`
		} `json:"key"`
	}
	_ = json.Unmarshal(m.Data, &ch)
	return ch.Key.ID
}

// waitConverged waits until model's vectors match the products (see converged).
func (e *env) waitConverged(model string) {
	e.t.Helper()
	eventually(e.t, time.Minute, func() string { return e.converged(model) })
}

// eventually polls cond until it returns "" or the test's time runs out.
func eventually(t *testing.T, d time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	why := ""
	for time.Now().Before(deadline) {
		if why = cond(); why == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not reached after %s: %s", d, why)
}
