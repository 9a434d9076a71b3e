package replication_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/sandbox"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/replication"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMain(m *testing.M) { testenv.Main(m) }

// recorder is a Publisher keeping every event it is given, in both formats. failFlushes
// makes that many Flush calls fail, as a lost JetStream ack would. By default it is
// at-least-once (Resume reports nothing stored, so a session replays everything from the
// confirmed LSN); with stream set it behaves as the JetStream publisher does: a failed Flush
// loses a suffix of what it covered, and Resume reports the last change kept.
type recorder struct {
	stream      bool
	mu          sync.Mutex
	native      [][]byte
	debezium    [][]byte
	changes     []event.Change
	settled     int // events covered by a Flush
	failFlushes atomic.Int32
	lost        int // events a failed Flush dropped (stream mode)
	// gate, when set, holds the Publish of change number gate.at until gate.release closes.
	gate *gate
	// resumedAt is how many changes were recorded at each Resume after the first: what a
	// new session finds in the stream.
	resumedAt []int
	resumes   int
}

type gate struct {
	at      int
	reached chan struct{} // closed when Publish waits at the gate
	release chan struct{}
	once    sync.Once
}

func newGate(at int) *gate {
	return &gate{at: at, reached: make(chan struct{}), release: make(chan struct{})}
}

func (r *recorder) Resume(context.Context, string) (event.Position, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resumes++; r.resumes > 1 {
		r.resumedAt = append(r.resumedAt, len(r.changes))
	}
	if !r.stream || len(r.changes) == 0 {
		return event.Position{}, nil
	}
	return r.changes[len(r.changes)-1].Position(), nil
}

func (r *recorder) Publish(ctx context.Context, c *event.Change) error {
	if g := r.gate; g != nil && r.count() == g.at {
		g.once.Do(func() { close(g.reached) })
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.native = append(r.native, c.AppendJSON(nil))
	r.debezium = append(r.debezium, c.AppendDebezium(nil))
	cp := *c
	// The Change and the memory of its values are reused once Publish returns.
	cp.After, cp.Before = copyRow(c.After), copyRow(c.Before)
	cp.UnchangedToast = append([]string(nil), c.UnchangedToast...)
	r.changes = append(r.changes, cp)
	return nil
}

func copyRow(r event.Row) event.Row {
	if r == nil {
		return nil
	}
	out := make(event.Row, len(r))
	for i, c := range r {
		out[i] = event.Column{Name: c.Name, Value: bytes.Clone(c.Value)}
	}
	return out
}

func (r *recorder) Flush(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	pending := len(r.native) - r.settled
	if pending > 0 && r.failFlushes.Add(-1) >= 0 {
		if r.stream {
			// What reached the stream is a prefix: the later half of the unacknowledged is lost.
			keep := r.settled + pending/2
			r.lost += len(r.native) - keep
			r.native, r.debezium, r.changes = r.native[:keep], r.debezium[:keep], r.changes[:keep]
		}
		r.settled = len(r.native)
		return errors.New("injected ack failure")
	}
	r.settled = len(r.native)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.native)
}

// env is a migrated database with two suppliers, the publication and the slot.
type env struct {
	url  string
	pool *pgxpool.Pool
	slot string
	log  *slog.Logger // the replicators'; nil: warnings and errors to stderr
}

func newEnv(t *testing.T, url string, tables ...string) *env {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	pool := testenv.Migrated(ctx, t, url)
	for _, id := range []int32{1, 2} {
		testenv.AddSupplier(ctx, t, pool, id, fmt.Sprint("s", id))
	}
	for _, stmt := range []string{
		`CREATE TABLE kinds (id bigint PRIMARY KEY, supplier_id int, i2 smallint, f8 float8, f4 real,
			b bool, d date, u uuid, tags text[], iv interval, ts timestamp, vc varchar(10), js json)`,
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	if len(tables) == 0 {
		tables = []string{"products"}
	}
	if _, err := replication.CheckWALLevel(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := replication.EnsurePublication(ctx, pool, "tidemark", tables); err != nil {
		t.Fatal(err)
	}
	// Twice: both are idempotent.
	if err := replication.EnsurePublication(ctx, pool, "tidemark", tables); err != nil {
		t.Fatal(err)
	}
	e := &env{url: url, pool: pool, slot: fmt.Sprintf("t_%d", time.Now().UnixNano()%1e9)}
	if created, err := replication.EnsureSlot(ctx, pool, e.slot); err != nil || !created {
		t.Fatalf("create slot: %v %v", created, err)
	}
	if created, err := replication.EnsureSlot(ctx, pool, e.slot); err != nil || created {
		t.Fatalf("create slot again: %v %v", created, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := 0; i < 50; i++ {
			if _, err := pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", e.slot); err == nil || !strings.Contains(err.Error(), "active") {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return e
}

func (e *env) exec(t *testing.T, sqls ...string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	for _, s := range sqls {
		if _, err := e.pool.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// run starts a replicator into pub; the returned stop cancels it and returns Run's error.
func (e *env) run(t *testing.T, pub replication.Publisher, mod ...func(*replication.Config)) (*replication.Replicator, func() error) {
	t.Helper()
	return e.runWith(t, prometheus.NewRegistry(), pub, mod...)
}

// runWith is run with the replicator's metrics registered in reg.
func (e *env) runWith(t *testing.T, reg prometheus.Registerer, pub replication.Publisher, mod ...func(*replication.Config)) (*replication.Replicator, func() error) {
	t.Helper()
	cfg := replication.Config{
		ConnString: e.url, Slot: e.slot, Publication: "tidemark",
		StatusInterval: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	log := e.log
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	r, err := replication.New(cfg, pub, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(15 * time.Second):
				runErr = errors.New("Run did not return within 15s of cancellation")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return r, stop
}

// normalize blanks the fields that differ from run to run (LSNs, xid, times, the slot
// name) and indents the event, keeping its key order.
func normalize(t *testing.T, event []byte) []byte {
	t.Helper()
	if !json.Valid(event) {
		t.Fatalf("event is not JSON:\n%s", event)
	}
	b := blankLSNs(event)
	b = reNum.ReplaceAll(b, []byte(`"$1":0`))
	b = reTS.ReplaceAll(b, []byte(`"commit_ts":"2000-01-01T00:00:00Z"`))
	b = reSlot.ReplaceAll(b, []byte(`"$1":"tidemark"`))
	// A Debezium message event's content is base64: blank the LSNs inside it too.
	b = reContent.ReplaceAllFunc(b, func(m []byte) []byte {
		raw, err := base64.StdEncoding.DecodeString(string(reContent.FindSubmatch(m)[1]))
		if err != nil {
			t.Fatalf("message content: %v", err)
		}
		raw = blankLSNs(raw)
		return []byte(`"content":"` + base64.StdEncoding.EncodeToString(raw) + `"`)
	})
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// blankLSNs replaces the LSNs in an event by fixed ones: 0/0, but for an epoch's open_lsn,
// which a valid epoch event never has as 0/0.
func blankLSNs(b []byte) []byte {
	b = reLSN.ReplaceAll(b, []byte(`"$1":"0/0"`))
	return bytes.ReplaceAll(b, []byte(`"open_lsn":"0/0"`), []byte(`"open_lsn":"16/B374D000"`))
}

var (
	reLSN     = regexp.MustCompile(`"(lsn|commit_lsn|open_lsn)":"[0-9A-F]+/[0-9A-F]+"`)
	reContent = regexp.MustCompile(`"content":"([A-Za-z0-9+/=]*)"`)
	reNum     = regexp.MustCompile(`"(xid|txId|ts_ms|lsn)":[0-9]+`)
	reTS      = regexp.MustCompile(`"commit_ts":"[^"]*"`)
	reSlot    = regexp.MustCompile(`"(slot|name)":"t_[0-9]+"`)
)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("..", "event", "testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestEventGolden runs one of every operation and type through a real slot and compares the
// events with the golden files of package event (which checks them against its JSON Schema),
// and checks the hand written encoder against encoding/json.
func TestEventGolden(t *testing.T) {
	e := newEnv(t, testenv.Database(t), "products", "kinds")
	rec := &recorder{}
	_, stop := e.run(t, rec)
	e.exec(t,
		`INSERT INTO products (supplier_id, sku, name, description, price, currency, status, attributes, updated_at)
		 VALUES (1, 'A-1', E'Widget "deluxe"\n\ttab', 'A fine widget', 12.30, 'EUR', 'active',
		         '{"color": "red", "sizes": [1, 2.5], "nested": {"ok": true}}', '2024-05-01 12:00:00.5+02')`,
		`INSERT INTO products (supplier_id, sku, name, description, price, currency, updated_at)
		 VALUES (2, 'B-1', 'Nulls', NULL, NULL, NULL, '2024-01-02 03:04:05+00')`,
		`UPDATE products SET price = 99999999.99, name = 'Widget 2' WHERE sku = 'A-1'`,
		`DELETE FROM products WHERE sku = 'B-1'`,
		`INSERT INTO kinds VALUES (7, 1, -32768, 'NaN', 1.5, true, '2024-02-29', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
		         '{a,"b c",NULL}', '1 day 02:00:00', '2024-05-01 12:00:00.123456', 'x\y', '{"k": [1, null]}')`,
		`INSERT INTO kinds (id, f8, b) VALUES (8, '-Infinity', false)`,
		`TRUNCATE products_s1`,
		`TRUNCATE products`,
	)
	// An epoch's open and close, as package snapshot writes them.
	var openLSN string
	if err := e.pool.QueryRow(testenv.Context(t, time.Minute), "SELECT pg_logical_emit_message(true, $1, $2)::text",
		replication.EpochOpenPrefix, `{"id":"s1-1733000000000000000.1","supplier":1,"schema":"public","table":"products"}`).Scan(&openLSN); err != nil {
		t.Fatal(err)
	}
	e.exec(t, fmt.Sprintf(`SELECT pg_logical_emit_message(true, '%s', '{"id":"s1-1733000000000000000.1","supplier":1,"schema":"public","table":"products","open_lsn":"%s","rows":2}')`,
		replication.EpochClosePrefix, openLSN))
	testenv.WaitFor(t, "10 events", 30*time.Second, func() bool { return rec.count() >= 10 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	names := []string{"insert", "insert_nulls", "update", "delete", "kinds", "kinds_special_floats", "truncate_partition", "truncate", "epoch_open", "epoch_close"}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.native) != len(names) {
		for _, ev := range rec.native {
			t.Logf("%s", ev)
		}
		t.Fatalf("got %d events, want %d", len(rec.native), len(names))
	}
	for i, name := range names {
		ev := rec.native[i]
		golden(t, name+".json", normalize(t, ev))
		golden(t, "debezium_"+name+".json", normalize(t, rec.debezium[i]))
		// Both envelopes decode back to the change the publisher was given.
		native, err := event.Decode(ev)
		if err != nil {
			t.Fatalf("%s: decode: %v\n%s", name, err, ev)
		}
		if again := native.AppendJSON(nil); !bytes.Equal(again, ev) {
			t.Errorf("%s: decoded and encoded again:\n%s\nwant\n%s", name, again, ev)
		}
		if native.Key != rec.changes[i].Key || native.Source.CommitLSN != rec.changes[i].Source.CommitLSN {
			t.Errorf("%s: decoded %+v", name, native)
		}
		deb, err := event.Decode(rec.debezium[i])
		if err != nil {
			t.Fatalf("%s: decode debezium: %v\n%s", name, err, rec.debezium[i])
		}
		if again := deb.AppendDebezium(nil); !bytes.Equal(again, rec.debezium[i]) {
			t.Errorf("%s: debezium decoded and encoded again:\n%s\nwant\n%s", name, again, rec.debezium[i])
		}
		if !deb.Source.CommitTS.Equal(rec.changes[i].Source.CommitTS.Truncate(time.Millisecond)) {
			t.Errorf("%s: debezium commit time %s, want %s", name, deb.Source.CommitTS, rec.changes[i].Source.CommitTS)
		}
		deb.Source.CommitTS = rec.changes[i].Source.CommitTS // Debezium's is to the millisecond
		if got := deb.AppendJSON(nil); !bytes.Equal(got, ev) {
			t.Errorf("%s: the envelopes decode differently:\n%s\n%s", name, got, ev)
		}
	}
	// The close names the open's position as the replicator saw it.
	if o, c := rec.changes[8].Epoch, rec.changes[9].Epoch; o == nil || c == nil || o.OpenLSN != c.OpenLSN || o.OpenLSN.String() != openLSN ||
		rec.changes[9].Key != (event.Key{SupplierID: 1}) || c.Rows != 2 {
		t.Errorf("epoch events: open %+v, close %+v (key %+v); want the same open_lsn %s", o, c, rec.changes[9].Key, openLSN)
	}
	// Deletes carry the key from the old key.
	if k := rec.changes[3].Key; k.SupplierID != 2 || k.ID != 2 {
		t.Errorf("delete key = %+v, want {2 2}", k)
	}
	// seq counts within a transaction; every statement above is its own.
	for i, c := range rec.changes {
		if c.Source.Seq != 0 {
			t.Errorf("event %d: seq %d, want 0", i, c.Source.Seq)
		}
		if c.Source.CommitLSN == 0 || c.Source.LSN == 0 || c.Source.XID == 0 || c.Source.CommitTS.IsZero() {
			t.Errorf("event %d: source not filled: %+v", i, c.Source)
		}
	}
}

// TestUnchangedToast: an update that leaves a large (TOASTed) description alone names it in
// unchanged_toast and leaves it out of after.
func TestUnchangedToast(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	// Random text does not compress, so it really is stored out of line.
	e.exec(t, `INSERT INTO products (supplier_id, sku, name, description)
		SELECT 1, 'T-1', 'Toasty', string_agg(md5(g::text), '') FROM generate_series(1, 2000) g`,
		`UPDATE products SET updated_at = '2024-05-01 12:00:00+00'`)
	rec := &recorder{}
	_, stop := e.run(t, rec)
	e.exec(t, `UPDATE products SET price = 5 WHERE sku = 'T-1'`)
	testenv.WaitFor(t, "3 events", 30*time.Second, func() bool { return rec.count() >= 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	upd := rec.changes[2]
	if upd.Op != event.OpUpdate {
		t.Fatalf("second event is %s", upd.Op)
	}
	if len(upd.UnchangedToast) != 1 || upd.UnchangedToast[0] != "description" {
		t.Errorf("unchanged_toast = %v, want [description]", upd.UnchangedToast)
	}
	if _, ok := upd.After.Get("description"); ok {
		t.Error("after carries description although it was not sent")
	}
	if v, _ := upd.After.Get("price"); string(v) != `"5.00"` {
		t.Errorf("price = %s", v)
	}
	if _, ok := rec.changes[0].After.Get("description"); !ok {
		t.Error("the insert must carry the description")
	}
	golden(t, "update_unchanged_toast.json", normalize(t, rec.native[2]))
	golden(t, "debezium_update_unchanged_toast.json", normalize(t, rec.debezium[2]))
}

// TestPartitionTruncate: a TRUNCATE of one supplier's partition reaches the stream as that
// partition's truncate, in its place among the transaction's changes, although pgoutput does
// not send it through the partition root (a partition made by hand, without the trigger,
// shows it: its truncate is not published until `supplier add` gives it the trigger). A
// TRUNCATE of products stays one event, and a partition truncated after it in the same
// transaction is published again. The trigger fires under session_replication_role =
// replica too, and no longer once its table is detached from products.
func TestPartitionTruncate(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	e.exec(t, `CREATE TABLE products_s3 PARTITION OF products FOR VALUES IN (3)`)
	rec := &recorder{}
	_, stop := e.run(t, rec)
	ins := func(supplier int, sku string) string {
		return fmt.Sprintf(`INSERT INTO products (supplier_id, sku, name) VALUES (%d, '%s', 'n')`, supplier, sku)
	}
	e.exec(t, ins(1, "A"), ins(2, "B"), ins(3, "C"),
		`BEGIN; `+ins(1, "A2")+`; TRUNCATE products_s1; `+ins(1, "A3")+`; COMMIT`,
		`TRUNCATE products_s3`, // no trigger: not published
		`BEGIN; TRUNCATE products; `+ins(2, "B2")+`; TRUNCATE products_s2; COMMIT`,
		`TRUNCATE products_s1, products_s2`,
	)
	testenv.AddSupplier(testenv.Context(t, time.Minute), t, e.pool, 3, "s3")
	e.exec(t, ins(3, "C2"), `TRUNCATE products_s3`,
		// As a logical replication apply worker runs: the trigger fires always.
		`BEGIN; SET LOCAL session_replication_role = replica; TRUNCATE products_s1; COMMIT`,
		// A detached partition keeps its trigger, but its truncates are no longer ours.
		`ALTER TABLE products DETACH PARTITION products_s2`, `TRUNCATE products_s2`,
		ins(1, "END"))

	type ev struct{ op, table, sku string }
	want := []ev{
		{"insert", "products", "A"}, {"insert", "products", "B"}, {"insert", "products", "C"},
		{"insert", "products", "A2"}, {"truncate", "products_s1", ""}, {"insert", "products", "A3"},
		{"truncate", "products", ""}, {"insert", "products", "B2"}, {"truncate", "products_s2", ""},
		{"truncate", "products_s1", ""}, {"truncate", "products_s2", ""},
		{"insert", "products", "C2"}, {"truncate", "products_s3", ""},
		{"truncate", "products_s1", ""},
		{"insert", "products", "END"},
	}
	testenv.WaitFor(t, "the last insert", 30*time.Second, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		n := len(rec.changes)
		return n > 0 && rec.changes[n-1].Op == event.OpInsert && func() bool {
			v, _ := rec.changes[n-1].After.Get("sku")
			return string(v) == `"END"`
		}()
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []ev
	for _, c := range rec.changes {
		g := ev{op: string(c.Op), table: c.Table}
		if v, ok := c.After.Get("sku"); ok {
			_ = json.Unmarshal(v, &g.sku)
		}
		got = append(got, g)
		if c.Op == event.OpTruncate && (c.Schema != "public" || c.Key != (event.Key{}) || c.Source.CommitLSN == 0) {
			t.Errorf("truncate event %+v", c)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n got %v\nwant %v", got, want)
	}
	// In its transaction: the partition's truncate shares the commit and sits between the
	// inserts around it.
	if a2, tr, a3 := rec.changes[3].Source, rec.changes[4].Source, rec.changes[5].Source; tr.CommitLSN != a2.CommitLSN ||
		tr.CommitLSN != a3.CommitLSN || tr.Seq != a2.Seq+1 || a3.Seq != tr.Seq+1 {
		t.Errorf("truncate not in its transaction's order: %+v %+v %+v", a2, tr, a3)
	}
}

// roleWithoutMessages revokes EXECUTE on every pg_logical_emit_message from PUBLIC in e's
// database (doctor's logical_messages fix) and returns a role of the test's own, given only
// grant (a statement with %s for the role), which may therefore not write logical messages.
func (e *env) roleWithoutMessages(ctx context.Context, t *testing.T, prefix, grant string) (role, url string) {
	t.Helper()
	all, _ := testenv.EmitMessageFunctions(ctx, t, e.pool)
	e.exec(t, "REVOKE EXECUTE ON FUNCTION "+all+" FROM PUBLIC")
	role, url = testenv.Role(ctx, t, e.pool, prefix)
	e.exec(t, fmt.Sprintf(grant, role))
	return role, url
}

// TestPartitionTruncateByPlainRole: with EXECUTE on pg_logical_emit_message revoked from
// PUBLIC (doctor's logical_messages fix), a role that may truncate a partition but not write
// logical messages still truncates it, and the truncate is published: the trigger's function
// writes the message as its owner. The role cannot write one itself.
func TestPartitionTruncateByPlainRole(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	ctx := testenv.Context(t, time.Minute)
	clerk, clerkURL := e.roleWithoutMessages(ctx, t, "truncate_clerk", "GRANT TRUNCATE ON products_s1 TO %s")
	rec := &recorder{}
	_, stop := e.run(t, rec)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'A', 'n')`)
	conn := testenv.Pool(t, clerkURL)
	_, err := conn.Exec(ctx, `SELECT pg_logical_emit_message(true, 'tidemark.truncate', '{"schema":"public","table":"products_s2"}')`)
	if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("the role wrote a logical message: %v", err)
	}
	if _, err := conn.Exec(ctx, "TRUNCATE products_s1"); err != nil {
		t.Fatalf("truncate as %s: %v", clerk, err)
	}
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (2, 'END', 'n')`)
	testenv.WaitFor(t, "the last insert", 30*time.Second, func() bool { return rec.count() >= 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if c := rec.changes[1]; c.Op != event.OpTruncate || c.Table != "products_s1" {
		t.Fatalf("second event %s of %s, want the truncate of products_s1", c.Op, c.Table)
	}
	if len(rec.changes) != 3 {
		t.Fatalf("%d events, want 3", len(rec.changes))
	}
}

// TestRelationChangeMidStream: ALTER TABLE while streaming, without a restart.
func TestRelationChangeMidStream(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	rec := &recorder{}
	_, stop := e.run(t, rec)
	e.exec(t,
		`INSERT INTO products (supplier_id, sku, name) VALUES (1, 'R-1', 'before')`,
		`ALTER TABLE products ADD COLUMN colour text`,
		`INSERT INTO products (supplier_id, sku, name, colour) VALUES (1, 'R-2', 'after', 'blue')`,
		`ALTER TABLE products DROP COLUMN status`,
		`UPDATE products SET colour = 'green' WHERE sku = 'R-1'`,
	)
	testenv.WaitFor(t, "3 events", 30*time.Second, func() bool { return rec.count() >= 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec.changes[0].After.Get("colour"); ok {
		t.Error("first insert has colour")
	}
	if v, _ := rec.changes[1].After.Get("colour"); string(v) != `"blue"` {
		t.Errorf("second insert colour = %s", v)
	}
	if _, ok := rec.changes[2].After.Get("status"); ok {
		t.Error("update after DROP COLUMN still has status")
	}
	if v, _ := rec.changes[2].After.Get("colour"); string(v) != `"green"` {
		t.Errorf("update colour = %s", v)
	}
}

// TestSeqAndMultiRowTransaction: seq counts the changes of one transaction, commit LSN shared.
func TestSeqAndMultiRowTransaction(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	rec := &recorder{}
	r, stop := e.run(t, rec)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 1 + g % 2, 'M-' || g, 'n' FROM generate_series(1, 500) g`)
	want := flushedInsertLSN(t, e.pool)
	testenv.WaitFor(t, "500 events", 30*time.Second, func() bool { return rec.count() >= 500 })
	testenv.WaitFor(t, "flushed past the transaction", 30*time.Second, func() bool { return r.Flushed() >= want })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for i, c := range rec.changes {
		if c.Source.Seq != i || c.Source.CommitLSN != rec.changes[0].Source.CommitLSN {
			t.Fatalf("change %d: seq %d commit %s", i, c.Source.Seq, c.Source.CommitLSN)
		}
		if i > 0 && c.Source.LSN <= rec.changes[i-1].Source.LSN {
			t.Fatalf("change %d: lsn %s not after %s", i, c.Source.LSN, rec.changes[i-1].Source.LSN)
		}
	}
	// The slot was told.
	s, err := replication.ReadSlot(context.Background(), e.pool, e.slot)
	if err != nil {
		t.Fatal(err)
	}
	if s.ConfirmedLSN < want {
		t.Errorf("slot confirmed %s, want >= %s", s.ConfirmedLSN, want)
	}
}

// TestFailedAckReplays: a failed flush (a lost ack) restarts from the confirmed LSN, so the
// unconfirmed transaction is published again and nothing is lost.
func TestFailedAckReplays(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	rec := &recorder{}
	rec.failFlushes.Store(1)
	r, stop := e.run(t, rec)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 1, 'F-' || g, 'n' FROM generate_series(1, 50) g`)
	testenv.WaitFor(t, "the replay", 30*time.Second, func() bool { return rec.count() >= 100 })
	stopFlushed(t, e.pool, r, stop)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	seen := map[string]int{}
	for _, c := range rec.changes {
		seen[fmt.Sprintf("%s:%d", c.Source.CommitLSN, c.Source.Seq)]++
	}
	if len(seen) != 50 {
		t.Fatalf("%d distinct msg ids, want 50", len(seen))
	}
	for id, n := range seen {
		if n != 2 {
			t.Errorf("%s published %d times, want 2 (once, then the replay)", id, n)
		}
	}
}

// TestFailedAckResumesAfterStored: when a failed ack loses part of what was published, the
// next session publishes exactly what is missing: each change once, in order.
func TestFailedAckResumesAfterStored(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	rec := &recorder{stream: true}
	rec.failFlushes.Store(1)
	r, stop := e.run(t, rec)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) SELECT 1, 'F-' || g, 'n' FROM generate_series(1, 50) g`)
	e.exec(t, `UPDATE products SET name = 'renamed' WHERE sku IN ('F-1', 'F-2')`)
	stopFlushed(t, e.pool, r, stop)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.lost == 0 {
		t.Fatal("the injected ack failure lost nothing: the resume path went untested")
	}
	if len(rec.changes) != 52 {
		t.Fatalf("%d changes recorded (%d lost and replayed), want 52", len(rec.changes), rec.lost)
	}
	for i := 1; i < len(rec.changes); i++ {
		if rec.changes[i].Position().Compare(rec.changes[i-1].Position()) <= 0 {
			t.Fatalf("change %d at %s follows %s", i, rec.changes[i].Position(), rec.changes[i-1].Position())
		}
	}
}

// TestIdleSlotAdvances: the published table is idle, another table is busy; the slot's
// confirmed LSN follows the WAL.
func TestIdleSlotAdvances(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	rec := &recorder{}
	_, stop := e.run(t, rec, func(c *replication.Config) { c.Heartbeat = 200 * time.Millisecond })
	defer stop()
	e.exec(t, `CREATE TABLE busy (id serial PRIMARY KEY, v text)`)
	other := testenv.Pool(t, testenv.Database(t))
	ctx := testenv.Context(t, time.Minute)
	if _, err := other.Exec(ctx, `CREATE TABLE elsewhere (id serial PRIMARY KEY, v text)`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		e.exec(t, `INSERT INTO busy (v) SELECT md5(g::text) FROM generate_series(1, 1000) g`)
		if _, err := other.Exec(ctx, `INSERT INTO elsewhere (v) SELECT md5(g::text) FROM generate_series(1, 1000) g`); err != nil {
			t.Fatal(err)
		}
	}
	target := flushedInsertLSN(t, e.pool)
	testenv.WaitFor(t, "the slot to pass the busy writes", 30*time.Second, func() bool {
		s, err := replication.ReadSlot(ctx, e.pool, e.slot)
		return err == nil && s.ConfirmedLSN >= target
	})
	if rec.count() != 0 {
		t.Errorf("heartbeats or other tables produced %d events", rec.count())
	}
}

// TestHeartbeatReconnects: the heartbeat's session ended by the server (a restart, an
// administrator) is made anew at the next beat.
func TestHeartbeatReconnects(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	ctx := testenv.Context(t, time.Minute)
	_, stop := e.run(t, &recorder{}, func(c *replication.Config) { c.Heartbeat = 100 * time.Millisecond })
	defer stop()
	session := func() (pid int32) {
		_ = e.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND backend_type = 'client backend'
			AND query LIKE 'SELECT pg_logical_emit_message(false, ''tidemark.heartbeat''%' ORDER BY pid LIMIT 1`).Scan(&pid)
		return pid
	}
	var first int32
	testenv.WaitFor(t, "the heartbeat's session", 30*time.Second, func() bool { first = session(); return first != 0 })
	e.exec(t, fmt.Sprintf("SELECT pg_terminate_backend(%d)", first))
	testenv.WaitFor(t, "a new heartbeat session", 30*time.Second, func() bool { pid := session(); return pid != 0 && pid != first })
}

// TestHeartbeatWithoutPrivilege: a replicating role that may not write logical messages
// (EXECUTE on pg_logical_emit_message revoked from PUBLIC, doctor's fix, and not granted to
// it) replicates, and the replicator warns once that its heartbeats fail.
func TestHeartbeatWithoutPrivilege(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	ctx := testenv.Context(t, time.Minute)
	role, roleURL := e.roleWithoutMessages(ctx, t, "heartbeat_plain", "ALTER ROLE %s REPLICATION")
	var out sandbox.Output
	e.url, e.log = roleURL, slog.New(slog.NewTextHandler(&out, nil))
	rec := &recorder{}
	_, stop := e.run(t, rec, func(c *replication.Config) { c.Heartbeat = 100 * time.Millisecond })
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'H', 'n')`)
	testenv.WaitFor(t, "the insert", 30*time.Second, func() bool { return rec.count() == 1 })
	const warning = "heartbeats fail: the role may not execute pg_logical_emit_message"
	testenv.WaitFor(t, "the heartbeat warning", 30*time.Second, func() bool { return strings.Contains(out.String(), warning) })
	// Five heartbeats more, refused on the connection they were refused on before: a refusal
	// is no reason to connect again. The heartbeat's session stays, the one of one pid.
	heartbeatPID := func() int32 {
		var pid int32
		err := e.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE usename = $1 AND backend_type = 'client backend'
			AND query LIKE 'SELECT pg_logical_emit_message(false, ''tidemark.heartbeat''%'`, role).Scan(&pid)
		if err != nil {
			t.Fatalf("the heartbeat's session of %s: %v", role, err)
		}
		return pid
	}
	first := heartbeatPID()
	for range 10 {
		time.Sleep(50 * time.Millisecond)
		if pid := heartbeatPID(); pid != first {
			t.Fatalf("the heartbeat connected again after a refusal: session %d, then %d", first, pid)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), warning); n != 1 {
		t.Errorf("warned %d times, want once:\n%s", n, out.String())
	}
}

func TestWALLevelReplica(t *testing.T) {
	pg := testenv.Postgres(t, sandbox.PostgresOptions{Settings: map[string]string{"wal_level": "replica", "max_wal_senders": "2", "max_replication_slots": "2"}})
	pool := testenv.Pool(t, pg.URL("postgres"))
	_, err := replication.CheckWALLevel(testenv.Context(t, time.Minute), pool)
	if !errors.Is(err, replication.ErrWALLevel) || !strings.Contains(err.Error(), "wal_level=replica") {
		t.Fatalf("err = %v, want ErrWALLevel naming wal_level=replica", err)
	}
}

func TestAdvanceSlot(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	ctx := testenv.Context(t, time.Minute)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'X', 'x')`)
	target := flushedInsertLSN(t, e.pool)
	got, err := replication.AdvanceSlot(ctx, e.pool, e.slot, target)
	if err != nil {
		t.Fatal(err)
	}
	if got != target {
		t.Errorf("advanced to %s, want %s", got, target)
	}
	_, err = replication.AdvanceSlot(ctx, e.pool, e.slot, target-1)
	if !errors.Is(err, replication.ErrBackward) {
		t.Fatalf("moving backward: err = %v, want ErrBackward", err)
	}
	if _, err := replication.ReadSlot(ctx, e.pool, "no_such_slot"); !errors.Is(err, replication.ErrNoSlot) {
		t.Errorf("missing slot: %v", err)
	}
}

// TestPostgresRestart: the server is killed while the replicator is inside a transaction it
// received in part and never confirmed. After the restart the slot replays the transaction
// from its start; what the stream already holds is skipped, the rest published: every
// change once, in order.
func TestPostgresRestart(t *testing.T) {
	pg := testenv.Postgres(t)
	e := newEnv(t, testenv.DatabaseIn(t, pg))
	// Held at the gate, the replicator stops reading: the server's wal sender fills the
	// socket and the commit of so large a transaction cannot arrive before the kill.
	const rows, at = 100_000, 1000
	rec := &recorder{stream: true, gate: newGate(at)}
	reg := prometheus.NewRegistry()
	r, stop := e.runWith(t, reg, rec)
	testenv.WaitFor(t, "streaming", 30*time.Second, func() bool { return r.Ready() == nil })
	e.exec(t, fmt.Sprintf(`INSERT INTO products (supplier_id, sku, name) SELECT 1, 'P-' || g, 'n' FROM generate_series(1, %d) g`, rows))
	end := flushedInsertLSN(t, e.pool)
	select {
	case <-rec.gate.reached:
	case <-time.After(time.Minute):
		t.Fatalf("the replicator never got to change %d (%d recorded)", at, rec.count())
	}
	// The precondition: the transaction is received in part and not confirmed.
	if n := rec.count(); n != at {
		t.Fatalf("%d changes recorded at the gate, want %d", n, at)
	}
	if f := r.Flushed(); f >= end {
		t.Fatalf("flushed %s before the kill, past the transaction's end %s: nothing left to replay", f, end)
	}
	e.pool.Reset()
	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	close(rec.gate.release) // it reads what the socket still holds, then finds the server gone
	if err := pg.Start(testenv.Context(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the transaction replayed and confirmed", 2*time.Minute, func() bool { return r.Flushed() >= end })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.resumedAt) == 0 {
		t.Fatal("no second session: the replicator never reconnected")
	}
	first := rec.resumedAt[0]
	if first < at || first >= rows {
		t.Fatalf("the first session recorded %d changes before it failed, want from %d to below %d: the kill was not mid-transaction", first, at, rows)
	}
	// Each change once, in commit order: the replay skipped exactly what the first session
	// had stored, and published the rest.
	if len(rec.changes) != rows {
		t.Fatalf("%d changes recorded, want %d", len(rec.changes), rows)
	}
	for i, c := range rec.changes {
		if c.Source.Seq != i || c.Source.CommitLSN != rec.changes[0].Source.CommitLSN {
			t.Fatalf("change %d: seq %d, commit %s: not the transaction once, in order", i, c.Source.Seq, c.Source.CommitLSN)
		}
	}
	if got := testenv.Counter(t, reg, "tidemark_replication_skipped_total"); got != float64(first) {
		t.Fatalf("skipped %v replayed changes, want the %d the stream held", got, first)
	}
	if got := testenv.Counter(t, reg, "tidemark_replication_reconnects_total"); got < 1 {
		t.Fatalf("reconnects %v, want at least 1", got)
	}
}

// stopFlushed waits until r has flushed everything written so far, then stops it.
func stopFlushed(t *testing.T, pool *pgxpool.Pool, r *replication.Replicator, stop func() error) {
	t.Helper()
	want := flushedInsertLSN(t, pool)
	testenv.WaitFor(t, "flushed", 30*time.Second, func() bool { return r.Flushed() >= want })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// flushedInsertLSN is the WAL insert position once it is flushed (the test cluster commits
// asynchronously, and slots only ever see flushed WAL).
func flushedInsertLSN(t *testing.T, pool *pgxpool.Pool) pglogrepl.LSN {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	var s string
	if err := pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the WAL flush", 30*time.Second, func() bool {
		var f string
		if err := pool.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&f); err != nil {
			t.Fatal(err)
		}
		fl, _ := pglogrepl.ParseLSN(f)
		return fl >= lsn
	})
	return lsn
}

// TestStartLSN: a start LSN past a transaction skips it (--from-lsn).
func TestStartLSN(t *testing.T) {
	e := newEnv(t, testenv.Database(t))
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'skip', 'n')`)
	from := flushedInsertLSN(t, e.pool)
	e.exec(t, `INSERT INTO products (supplier_id, sku, name) VALUES (1, 'keep', 'n')`)
	end := flushedInsertLSN(t, e.pool)
	rec := &recorder{}
	r, stop := e.run(t, rec, func(c *replication.Config) { c.StartLSN = from })
	testenv.WaitFor(t, "flushed", 30*time.Second, func() bool { return r.Flushed() >= end })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.changes) != 1 {
		t.Fatalf("%d changes, want only the one after the start LSN", len(rec.changes))
	}
	if v, _ := rec.changes[0].After.Get("sku"); string(v) != `"keep"` {
		t.Errorf("got sku %s", v)
	}
}

// TestEnsureSlotRefusesAnotherDatabasesSlot: slot names are cluster-wide. A slot of the same
// name made for another database (or another plugin) must be a clear error at setup, not a
// replicator that retries START_REPLICATION for ever.
func TestEnsureSlotRefusesAnotherDatabasesSlot(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	a := testenv.Pool(t, testenv.Database(t))
	b := testenv.Pool(t, testenv.Database(t))
	name := fmt.Sprintf("shared_%d", time.Now().UnixNano()%1e9)
	if created, err := replication.EnsureSlot(ctx, a, name); err != nil || !created {
		t.Fatalf("create in a: %v %v", created, err)
	}
	t.Cleanup(func() { _, _ = a.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", name) })
	if _, err := replication.EnsureSlot(ctx, b, name); !errors.Is(err, replication.ErrSlotNotOurs) {
		t.Fatalf("ensure in another database: %v, want ErrSlotNotOurs", err)
	}
	other := name + "_td"
	if _, err := a.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'test_decoding')", other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = a.Exec(context.Background(), "SELECT pg_drop_replication_slot($1)", other) })
	if _, err := replication.EnsureSlot(ctx, a, other); !errors.Is(err, replication.ErrSlotNotOurs) {
		t.Fatalf("ensure over a test_decoding slot: %v, want ErrSlotNotOurs", err)
	}
}
