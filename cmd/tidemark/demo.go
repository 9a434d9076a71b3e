package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/config"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/internal/fakedrop"
	"github.com/tidemark/tidemark/internal/sandbox"
	"github.com/tidemark/tidemark/loader"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
	"golang.org/x/sync/errgroup"
)

// DemoCmd is `tidemark demo`: the whole pipeline against throw-away servers, on a laptop.
type DemoCmd struct {
	Products int           `default:"5000" help:"Products to generate, over three suppliers."`
	Query    string        `default:"waterproof hiking jacket" help:"Query of the sample search."`
	Timeout  time.Duration `default:"90s" help:"Fail when the vectors have not caught up with the table this long after the last change."`
}

// Run starts PostgreSQL and NATS in temp dirs, loads generated drops, streams and encodes
// them in-process, changes some products, waits until every vector is current, prints a
// report on stdout and removes everything. --pg-url and --nats-url are not used.
func (c *DemoCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	err := c.run(ctx, g, log)
	if err != nil && ctx.Err() != nil {
		// Unlike a service stopped by a signal, an interrupted demo did not do its job.
		return exitCode{code: 1, msg: "demo interrupted; its servers are stopped and their files removed"}
	}
	return err
}

func (c *DemoCmd) run(ctx context.Context, g *Globals, log *slog.Logger) error {
	if c.Products < 30 {
		return fmt.Errorf("--products %d: want at least 30", c.Products)
	}
	var rc ReplicateCmd
	var ec EncodeCmd
	if err := withDefaults(&rc); err != nil {
		return err
	}
	if err := withDefaults(&ec); err != nil {
		return err
	}
	rc.HTTPAddr, ec.HTTPAddr = "", ""
	// The demo starts from an empty table: every row reaches the stream as an insert.
	rc.Snapshot = "never"
	// Two encoders of one worker each stand for two `tidemark encode` processes sharing the
	// durable consumer.
	ec.Workers = 1

	log.Info("starting a throw-away PostgreSQL (wal_level=logical)")
	pg, err := sandbox.StartPostgres(ctx, sandbox.PostgresOptions{})
	if err != nil {
		if errors.Is(err, sandbox.ErrNoPostgres) {
			return exitCode{code: 1, msg: "the demo runs a throw-away PostgreSQL, but " + err.Error()}
		}
		return fmt.Errorf("start postgres: %w", err)
	}
	defer func() {
		if err := pg.Close(); err != nil {
			log.Warn("stop postgres", "err", err)
		}
		log.Info("stopped the servers and removed their files")
	}()
	log.Info("starting an embedded NATS server with JetStream")
	ns, err := sandbox.StartNATS(sandbox.NATSOptions{})
	if err != nil {
		return fmt.Errorf("start nats: %w", err)
	}
	defer func() {
		if err := ns.Close(); err != nil {
			log.Warn("stop nats", "err", err)
		}
	}()
	work, err := os.MkdirTemp("", "tidemark-demo-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(work); err != nil {
			log.Warn("remove work dir", "err", err)
		}
	}()
	// The demo's own servers, with the caller's logging settings.
	dg := &Globals{Postgres: config.Postgres{URL: pg.URL("postgres")}, NATS: config.NATS{URL: ns.URL()}, Log: g.Log}

	d := &demo{cmd: c, log: log, work: work, ec: &ec, slot: rc.Slot}
	if d.pool, err = dg.Pool(ctx, log); err != nil {
		return err
	}
	defer d.pool.Close()
	if d.nc, err = dg.NATSConn(log, "demo"); err != nil {
		return err
	}
	defer d.nc.Close()
	if d.js, err = jetstream.New(d.nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if d.emb, err = ec.EmbedderFlags.New(log); err != nil {
		return err
	}
	if err := d.prepare(ctx); err != nil {
		return err
	}

	// The pipeline: replicate and two encoders, each with a registry of its own as separate
	// processes would have.
	d.replReg = prometheus.NewRegistry()
	r, _, closeRepl, err := rc.newReplicator(ctx, dg, log.With("component", "replicate"), d.replReg)
	if err != nil {
		return err
	}
	defer closeRepl()
	d.repl = r
	var encs [2]*encoder.Encoder
	for i := range encs {
		d.encRegs[i] = prometheus.NewRegistry()
		name := fmt.Sprintf("encode-%d", i+1)
		enc, _, closeEnc, err := ec.newEncoder(ctx, dg, log.With("component", name), d.encRegs[i], name)
		if err != nil {
			return err
		}
		defer closeEnc()
		encs[i] = enc
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	grp, gctx := errgroup.WithContext(runCtx)
	grp.Go(func() error { return r.Run(gctx) })
	for _, enc := range encs {
		grp.Go(func() error { return enc.Run(gctx) })
	}
	grp.Go(func() error {
		defer stop() // done (or failed): stop the pipeline
		return d.script(gctx)
	})
	if err := grp.Wait(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	log.Info("pipeline stopped", "confirmed", r.Flushed())
	if err := d.finish(ctx); err != nil {
		return err
	}
	return d.report(os.Stdout)
}

// demoDrops are the demo's suppliers and the file each sends: between them, every format the
// loader reads.
var demoDrops = []struct {
	supplier fakedrop.Supplier
	file     string
}{
	{fakedrop.Suppliers[0], "s1-northwind.csv"},
	{fakedrop.Suppliers[1], "s2-copperpot.ndjson.gz"},
	{fakedrop.Suppliers[2], "s3-voltline.csv.gz"},
}

// demoSeed seeds the generated catalogues: every demo loads the same products.
const demoSeed = 1

// demo is the state of one run and what its report is made of.
type demo struct {
	cmd  *DemoCmd
	log  *slog.Logger
	work string
	ec   *EncodeCmd
	slot string

	pool    *pgxpool.Pool
	nc      *nats.Conn
	js      jetstream.JetStream
	emb     encoder.Embedder
	repl    *replication.Replicator
	replReg *prometheus.Registry
	encRegs [2]*prometheus.Registry

	pgVersion string
	sizes     []int // products per supplier, as first loaded
	loads     []loadReport
	changes   []string
	deleted   int64

	start, lastChange, caughtUp time.Time
	live, tombstones            int64
	hits                        []encoder.Hit
	checkpoint                  pglogrepl.LSN
	streamMsgs                  uint64
}

type loadReport struct {
	supplier fakedrop.Supplier
	file     string
	res      loader.Result
}

// prepare migrates and adds the suppliers.
func (d *demo) prepare(ctx context.Context) error {
	if err := d.pool.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&d.pgVersion); err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	if _, err := catalog.Migrate(ctx, d.pool); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		for _, s := range demoDrops {
			if err := catalog.AddSupplier(ctx, tx, s.supplier.ID, s.supplier.Name); err != nil {
				return err
			}
		}
		return nil
	})
}

// script is what a user of the pipeline does while it runs: load drops, change products, then
// wait for the vectors to catch up and search them.
func (d *demo) script(ctx context.Context) error {
	d.start = time.Now()
	d.log.Info("generating and loading a drop per supplier", "products", d.cmd.Products)
	for i, s := range demoDrops {
		n := d.cmd.Products / len(demoDrops)
		if i == 0 {
			n += d.cmd.Products % len(demoDrops)
		}
		d.sizes = append(d.sizes, n)
		file := filepath.Join(d.work, s.file)
		if err := fakedrop.WriteFile(file, fakedrop.New(s.supplier, demoSeed).Products(n)); err != nil {
			return err
		}
		res, err := d.load(ctx, s.supplier, file, false)
		if err != nil {
			return err
		}
		d.loads = append(d.loads, loadReport{supplier: s.supplier, file: s.file, res: res})
	}
	if err := d.changeRound(ctx); err != nil {
		return err
	}
	d.lastChange = time.Now()
	var target pglogrepl.LSN
	if err := d.pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&target); err != nil {
		return fmt.Errorf("current wal lsn: %w", err)
	}
	if err := d.waitCaughtUp(ctx, target); err != nil {
		return err
	}
	d.caughtUp = time.Now()
	vecs, err := d.emb.Embed(ctx, []string{d.cmd.Query})
	if err != nil {
		return fmt.Errorf("embed query: %w", err)
	}
	store, err := encoder.OpenStore(ctx, d.pool)
	if err != nil {
		return err
	}
	d.hits, err = store.Search(ctx, d.emb.Model(), vecs[0], 0, 3)
	return err
}

func (d *demo) load(ctx context.Context, s fakedrop.Supplier, file string, full bool) (loader.Result, error) {
	f, err := os.Open(file)
	if err != nil {
		return loader.Result{}, fmt.Errorf("open drop: %w", err)
	}
	defer f.Close()
	format, _ := loader.FormatOf(file)
	rd, err := loader.Open(bufio.NewReader(f), format)
	if err != nil {
		return loader.Result{}, fmt.Errorf("%s: %w", file, err)
	}
	// The generated drops are valid: a reject is a bug, so none are allowed.
	res, err := loader.Load(ctx, d.pool, rd, loader.Options{Supplier: s.ID, Full: full, MaxRejects: 0, Log: d.log})
	if err != nil {
		return res, fmt.Errorf("load %s: %w", filepath.Base(file), err)
	}
	d.log.Info("loaded drop", "supplier", s.ID, "file", filepath.Base(file), "inserted", res.Inserted,
		"updated", res.Updated, "unchanged", res.Unchanged, "deleted", res.Deleted, "rows_per_second", int64(res.RowsPerSecond))
	return res, nil
}

// changeRound changes the catalogue the two ways it changes in life: a supplier sends a new
// whole catalogue (some products renamed, some repriced, some gone; the loader writes only what
// changed), and the application updates and deletes rows directly.
func (d *demo) changeRound(ctx context.Context) error {
	s := demoDrops[0].supplier
	n := d.sizes[0]
	gone := max(1, n/50) // the oldest products are discontinued
	next := func(yield func(fakedrop.Product) bool) {
		i := 0
		// 6%: a new price, name or description.
		for p := range fakedrop.New(s, demoSeed).Reload(n, 6) {
			i++
			if i > gone && !yield(p) {
				return
			}
		}
	}
	file := filepath.Join(d.work, "s1-northwind-full.csv")
	if err := fakedrop.WriteFile(file, next); err != nil {
		return err
	}
	res, err := d.load(ctx, s, file, true)
	if err != nil {
		return err
	}
	d.deleted += res.Deleted
	d.changes = append(d.changes, fmt.Sprintf("supplier %d sends a new full catalogue (tidemark load --full): %d updated (new prices, names and descriptions), %d deleted, %d unchanged",
		s.ID, res.Updated, res.Deleted, res.Unchanged))

	tag, err := d.pool.Exec(ctx, `UPDATE products SET price = round(price * 0.9, 2), updated_at = now()
		WHERE supplier_id = $1 AND id % 20 = 0`, demoDrops[1].supplier.ID)
	if err != nil {
		return fmt.Errorf("price update: %w", err)
	}
	d.changes = append(d.changes, fmt.Sprintf("supplier %d puts %s on sale (UPDATE of the price only)", demoDrops[1].supplier.ID, plural(tag.RowsAffected(), "product")))
	tag, err = d.pool.Exec(ctx, `DELETE FROM products WHERE supplier_id = $1 AND id % 25 = 0`, demoDrops[2].supplier.ID)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	d.deleted += tag.RowsAffected()
	d.changes = append(d.changes, fmt.Sprintf("supplier %d withdraws %s (DELETE)", demoDrops[2].supplier.ID, plural(tag.RowsAffected(), "product")))
	d.log.Info("changed products", "changes", strings.Join(d.changes, "; "))
	return nil
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// waitCaughtUp waits until the replicator has confirmed target, the encoders have acked every
// event, and the vector table matches the products table, or fails after --timeout.
func (d *demo) waitCaughtUp(ctx context.Context, target pglogrepl.LSN) error {
	d.log.Info("waiting for the vectors to catch up", "lsn", target)
	deadline := time.Now().Add(d.cmd.Timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		state, ok, err := d.caughtUpState(ctx, target)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the vectors did not catch up with the table within %s: %s", d.cmd.Timeout, state)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// caughtUpState says whether the pipeline has caught up, and if not, where it stands.
func (d *demo) caughtUpState(ctx context.Context, target pglogrepl.LSN) (string, bool, error) {
	if f := d.repl.Flushed(); f < target {
		return fmt.Sprintf("replicate has confirmed %s of %s", f, target), false, nil
	}
	cons, err := d.js.Consumer(ctx, sink.Stream, d.ec.Consumer)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return "the encoders have not created their consumer yet", false, nil
		}
		return "", false, fmt.Errorf("consumer %s: %w", d.ec.Consumer, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return "", false, fmt.Errorf("consumer %s: %w", d.ec.Consumer, err)
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Sprintf("the encoders have %d events pending and %d unacknowledged", info.NumPending, info.NumAckPending), false, nil
	}
	stale, missing, err := d.compare(ctx)
	if err != nil {
		return "", false, err
	}
	if stale > 0 || missing > 0 {
		return fmt.Sprintf("%d live products lack a current vector, %d deleted ones are not tombstoned", stale, missing), false, nil
	}
	return "caught up", true, nil
}

// compare checks the vector table against products: stale counts live products without a
// vector of their current text, missing deleted products whose vector is not a tombstone.
func (d *demo) compare(ctx context.Context) (stale, missing int64, err error) {
	return compareVectors(ctx, d.pool, d.emb.Model())
}

// compareVectors counts the products whose vector of model is not the one of their current
// text (stale: missing, deleted or of an older text), and the live vectors whose product is
// gone (missing).
func compareVectors(ctx context.Context, pool *pgxpool.Pool, model string) (stale, missing int64, err error) {
	rows, err := pool.Query(ctx, `SELECT p.name, coalesce(p.description, ''), p.attributes::text,
			e.content_hash, coalesce(NOT e.deleted AND e.embedding IS NOT NULL, false)
		FROM products p
		LEFT JOIN product_embeddings e ON e.supplier_id = p.supplier_id AND e.product_id = p.id AND e.model = $1`, model)
	if err != nil {
		return 0, 0, fmt.Errorf("compare vectors: %w", err)
	}
	var (
		name, desc, attrs string
		hash              []byte
		live              bool
	)
	_, err = pgx.ForEachRow(rows, []any{&name, &desc, &attrs, &hash, &live}, func() error {
		if !live || string(hash) != string(encoder.ContentHash(model, encoder.Text(name, desc, json.RawMessage(attrs)))) {
			stale++
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("compare vectors: %w", err)
	}
	err = pool.QueryRow(ctx, `SELECT count(*) FROM product_embeddings e
		WHERE e.model = $1 AND NOT e.deleted
			AND NOT EXISTS (SELECT 1 FROM products p WHERE p.supplier_id = e.supplier_id AND p.id = e.product_id)`, model).Scan(&missing)
	if err != nil {
		return 0, 0, fmt.Errorf("compare vectors: %w", err)
	}
	return stale, missing, nil
}

// finish gathers what the report needs once the pipeline has stopped: the vectors, the stream
// and the final checkpoint.
func (d *demo) finish(ctx context.Context) error {
	err := d.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted)
		FROM product_embeddings WHERE model = $1`, d.emb.Model()).Scan(&d.live, &d.tombstones)
	if err != nil {
		return fmt.Errorf("count vectors: %w", err)
	}
	st, err := d.js.Stream(ctx, sink.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", sink.Stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", sink.Stream, err)
	}
	d.streamMsgs = info.State.Msgs
	cps, err := sink.OpenCheckpoints(ctx, d.js)
	if err != nil {
		return err
	}
	d.checkpoint, err = cps.Load(ctx, d.slot)
	return err
}

// report prints the outcome on w.
func (d *demo) report(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	products := 0
	for _, n := range d.sizes {
		products += n
	}
	fmt.Fprintf(tw, "Tidemark demo: %d products from %d suppliers, PostgreSQL %s, NATS JetStream (embedded)\n\n", products, len(d.sizes), d.pgVersion)
	fmt.Fprintln(tw, "Loaded (tidemark load):")
	for _, l := range d.loads {
		fmt.Fprintf(tw, "  supplier %d\t%s\t%s\t%d rows\t%.2fs\t%.0f rows/s\n", l.supplier.ID, l.supplier.Name, l.file, l.res.Inserted, l.res.Seconds, l.res.RowsPerSecond)
	}
	fmt.Fprintln(tw, "\nChanged:")
	for _, c := range d.changes {
		fmt.Fprintf(tw, "  %s\n", c)
	}
	ops := counterByLabel(d.replReg, "tidemark_replication_changes_total", "op")
	var events float64
	var parts []string
	for _, op := range []string{"insert", "update", "delete"} {
		events += ops[op]
		parts = append(parts, fmt.Sprintf("%.0f %s", ops[op], op))
	}
	fmt.Fprintf(tw, "\nReplicated: %.0f events published (%s); stream %s holds %d messages\n", events, strings.Join(parts, ", "), sink.Stream, d.streamMsgs)
	var perEncoder []string
	var embedded float64
	for i, reg := range d.encRegs {
		res := counterByLabel(reg, "tidemark_encoder_events_total", "result")
		var n float64
		for _, v := range res {
			n += v
		}
		perEncoder = append(perEncoder, fmt.Sprintf("encode-%d %.0f", i+1, n))
		embedded += counterByLabel(reg, "tidemark_embed_texts_total", "")[""]
	}
	fmt.Fprintf(tw, "Encoded: events shared by two encoders (%s); %.0f texts embedded (a change that leaves the text as it was keeps its vector)\n", strings.Join(perEncoder, ", "), embedded)
	fmt.Fprintf(tw, "Vectors (model %s): %d live, %d deleted; every live product has a current vector\n", d.emb.Model(), d.live, d.tombstones)
	total := d.caughtUp.Sub(d.start).Seconds()
	fmt.Fprintf(tw, "Timing: all vectors current %.1fs after the last change; %.1fs from the first load (%.0f events/s end to end)\n",
		d.caughtUp.Sub(d.lastChange).Seconds(), total, events/total)
	fmt.Fprintf(tw, "\nSearch %q (tidemark search, top %d):\n", d.cmd.Query, len(d.hits))
	for _, h := range d.hits {
		fmt.Fprintf(tw, "  %.4f\tsupplier %d\t%s\t%s\n", h.Score, h.SupplierID, h.SKU, h.Name)
	}
	fmt.Fprintf(tw, "\nStopped cleanly: final checkpoint of slot %s at %s\n", d.slot, d.checkpoint)
	return tw.Flush()
}

// counterByLabel sums the counter name of reg by the value of label ("" sums everything
// under the key "").
func counterByLabel(reg prometheus.Gatherer, name, label string) map[string]float64 {
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, lp := range m.GetLabel() {
				if label != "" && lp.GetName() == label {
					key = lp.GetValue()
				}
			}
			out[key] += m.GetCounter().GetValue()
		}
	}
	return out
}
