package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
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
		enc, closeEnc, err := ec.newEncoder(ctx, dg, log.With("component", name), d.encRegs[i], name)
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
	supplier demoSupplier
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
		for _, s := range demoSuppliers {
			if err := catalog.AddSupplier(ctx, tx, s.id, s.name); err != nil {
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
	for i, s := range demoSuppliers {
		n := d.cmd.Products / len(demoSuppliers)
		if i == 0 {
			n += d.cmd.Products % len(demoSuppliers)
		}
		d.sizes = append(d.sizes, n)
		file := filepath.Join(d.work, s.drop)
		if err := writeDrop(file, s.products(n)); err != nil {
			return err
		}
		res, err := d.load(ctx, s, file, false)
		if err != nil {
			return err
		}
		d.loads = append(d.loads, loadReport{supplier: s, file: s.drop, res: res})
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

func (d *demo) load(ctx context.Context, s demoSupplier, file string, full bool) (loader.Result, error) {
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
	res, err := loader.Load(ctx, d.pool, rd, loader.Options{Supplier: s.id, Full: full, MaxRejects: 0, Log: d.log})
	if err != nil {
		return res, fmt.Errorf("load %s: %w", filepath.Base(file), err)
	}
	d.log.Info("loaded drop", "supplier", s.id, "file", filepath.Base(file), "inserted", res.Inserted,
		"updated", res.Updated, "unchanged", res.Unchanged, "deleted", res.Deleted, "rows_per_second", int64(res.RowsPerSecond))
	return res, nil
}

// changeRound changes the catalogue the two ways it changes in life: a supplier sends a new
// whole catalogue (some products renamed, some repriced, some gone; the loader writes only what
// changed), and the application updates and deletes rows directly.
func (d *demo) changeRound(ctx context.Context) error {
	s := demoSuppliers[0]
	n := d.sizes[0]
	gone := max(1, n/50) // the oldest products are discontinued
	next := func(yield func(demoProduct) bool) {
		i := -1
		for p := range s.products(n) {
			i++
			if i < gone {
				continue
			}
			switch {
			case i%100 == 5: // 1%: a new name
				p.Name += " (2027 model)"
			case i%20 == 7: // 5%: a new price
				p.Price = fmt.Sprintf("%.2f", mustFloat(p.Price)*1.1)
			}
			if !yield(p) {
				return
			}
		}
	}
	file := filepath.Join(d.work, "s1-northwind-full.csv")
	if err := writeDrop(file, next); err != nil {
		return err
	}
	res, err := d.load(ctx, s, file, true)
	if err != nil {
		return err
	}
	d.deleted += res.Deleted
	d.changes = append(d.changes, fmt.Sprintf("supplier %d sends a new full catalogue (tidemark load --full): %d updated (renames and prices), %d deleted, %d unchanged",
		s.id, res.Updated, res.Deleted, res.Unchanged))

	tag, err := d.pool.Exec(ctx, `UPDATE products SET price = round(price * 0.9, 2), updated_at = now()
		WHERE supplier_id = $1 AND id % 20 = 0`, demoSuppliers[1].id)
	if err != nil {
		return fmt.Errorf("price update: %w", err)
	}
	d.changes = append(d.changes, fmt.Sprintf("supplier %d puts %s on sale (UPDATE of the price only)", demoSuppliers[1].id, plural(tag.RowsAffected(), "product")))
	tag, err = d.pool.Exec(ctx, `DELETE FROM products WHERE supplier_id = $1 AND id % 25 = 0`, demoSuppliers[2].id)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	d.deleted += tag.RowsAffected()
	d.changes = append(d.changes, fmt.Sprintf("supplier %d withdraws %s (DELETE)", demoSuppliers[2].id, plural(tag.RowsAffected(), "product")))
	d.log.Info("changed products", "changes", strings.Join(d.changes, "; "))
	return nil
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func mustFloat(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
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
	model := d.emb.Model()
	rows, err := d.pool.Query(ctx, `SELECT p.name, coalesce(p.description, ''), p.attributes::text,
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
	err = d.pool.QueryRow(ctx, `SELECT count(*) FROM product_embeddings e
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
		fmt.Fprintf(tw, "  supplier %d\t%s\t%s\t%d rows\t%.2fs\t%.0f rows/s\n", l.supplier.id, l.supplier.name, l.file, l.res.Inserted, l.res.Seconds, l.res.RowsPerSecond)
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

// demoProduct is one generated product, as a drop carries it.
type demoProduct struct {
	SKU         string         `json:"sku"`
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Price       string         `json:"price"`
	Currency    string         `json:"currency"`
	Status      string         `json:"status"`
	Attributes  map[string]any `json:"attributes"`
}

// writeDrop writes products as the file's name says: CSV or NDJSON, gzipped when it ends in .gz.
func writeDrop(file string, products iter.Seq[demoProduct]) (err error) {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("create drop: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write drop: %w", cerr)
		}
	}()
	bw := bufio.NewWriter(f)
	var out io.Writer = bw
	var gz *gzip.Writer
	if strings.HasSuffix(file, ".gz") {
		gz = gzip.NewWriter(bw)
		out = gz
	}
	format, _ := loader.FormatOf(file)
	if format == loader.NDJSON {
		enc := json.NewEncoder(out)
		for p := range products {
			if err := enc.Encode(&p); err != nil {
				return fmt.Errorf("write drop: %w", err)
			}
		}
	} else {
		cw := csv.NewWriter(out)
		_ = cw.Write(loader.Columns[:])
		for p := range products {
			attrs, err := json.Marshal(p.Attributes)
			if err != nil {
				return fmt.Errorf("write drop: %w", err)
			}
			_ = cw.Write([]string{p.SKU, p.Name, p.Description, p.Price, p.Currency, p.Status, string(attrs)})
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return fmt.Errorf("write drop: %w", err)
		}
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return fmt.Errorf("write drop: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write drop: %w", err)
	}
	return nil
}

// demoSupplier generates a plausible catalogue: names, descriptions and attributes drawn from
// a vocabulary of its trade, so that a search finds what it should.
type demoSupplier struct {
	id         int32
	name       string
	prefix     string // of skus
	drop       string // file name of its drop: the format, and .gz for gzip
	currency   string
	brands     []string
	kinds      []demoKind
	adjectives []string
	colors     []string
	uses       []string
}

type demoKind struct {
	noun, category string
	materials      []string
	minPrice       float64
	maxPrice       float64
}

var demoSuppliers = []demoSupplier{
	{
		id: 1, name: "Northwind Outdoor", prefix: "NW", drop: "s1-northwind.csv", currency: "EUR",
		brands: []string{"Northwind", "Ridgeline", "Fjellro"},
		kinds: []demoKind{
			{"hiking jacket", "jackets", []string{"Gore-Tex", "ripstop nylon", "recycled polyester"}, 89, 420},
			{"rain shell", "jackets", []string{"Gore-Tex", "coated nylon"}, 69, 300},
			{"hiking boots", "footwear", []string{"full-grain leather", "suede", "synthetic mesh"}, 79, 260},
			{"trail runners", "footwear", []string{"synthetic mesh", "knit"}, 69, 180},
			{"backpack", "packs", []string{"Cordura", "ripstop nylon", "Dyneema"}, 49, 320},
			{"tent", "shelter", []string{"silnylon", "polyester", "Dyneema"}, 129, 890},
			{"sleeping bag", "sleep", []string{"goose down", "synthetic fill"}, 79, 560},
			{"fleece pullover", "midlayers", []string{"Polartec fleece", "merino wool"}, 39, 160},
		},
		adjectives: []string{"waterproof", "lightweight", "insulated", "packable", "windproof", "breathable", "ultralight", "four-season"},
		colors:     []string{"black", "forest green", "navy", "orange", "slate grey", "sand"},
		uses:       []string{"alpine hiking", "long-distance trekking", "wet autumn days", "winter camping", "trail running", "everyday commuting"},
	},
	{
		id: 2, name: "Copperpot Kitchen", prefix: "CP", drop: "s2-copperpot.ndjson.gz", currency: "EUR",
		brands: []string{"Copperpot", "Maison Feu", "Hearthline"},
		kinds: []demoKind{
			{"frying pan", "cookware", []string{"carbon steel", "cast iron", "stainless steel", "copper"}, 24, 210},
			{"saucepan", "cookware", []string{"stainless steel", "copper", "aluminium"}, 29, 190},
			{"chef's knife", "knives", []string{"Damascus steel", "carbon steel", "stainless steel"}, 35, 340},
			{"kettle", "small appliances", []string{"stainless steel", "glass", "enamel"}, 25, 140},
			{"espresso machine", "small appliances", []string{"stainless steel", "brushed aluminium"}, 149, 1200},
			{"cutting board", "prep", []string{"walnut", "oak", "bamboo"}, 19, 120},
			{"mixing bowl set", "prep", []string{"stainless steel", "glass", "ceramic"}, 15, 80},
			{"dutch oven", "cookware", []string{"enamelled cast iron", "cast iron"}, 59, 380},
		},
		adjectives: []string{"non-stick", "induction-ready", "dishwasher-safe", "professional", "oven-safe", "hand-forged", "compact", "heavy-duty"},
		colors:     []string{"matte black", "copper", "cream", "cherry red", "sage", "steel"},
		uses:       []string{"searing steaks", "weeknight cooking", "slow braises", "baking bread", "morning coffee", "meal prep"},
	},
	{
		id: 3, name: "Voltline Electronics", prefix: "VL", drop: "s3-voltline.csv.gz", currency: "USD",
		brands: []string{"Voltline", "Aural", "Kestrel"},
		kinds: []demoKind{
			{"wireless headphones", "audio", []string{"aluminium", "plastic", "leather"}, 49, 450},
			{"bluetooth speaker", "audio", []string{"fabric", "rubberised plastic"}, 29, 300},
			{"USB-C charger", "power", []string{"GaN", "plastic"}, 15, 90},
			{"power bank", "power", []string{"aluminium", "plastic"}, 19, 120},
			{"mechanical keyboard", "peripherals", []string{"aluminium", "PBT plastic"}, 59, 260},
			{"4K monitor", "displays", []string{"aluminium", "plastic"}, 229, 1100},
			{"webcam", "peripherals", []string{"plastic", "aluminium"}, 39, 220},
			{"smartwatch", "wearables", []string{"titanium", "aluminium", "steel"}, 99, 650},
		},
		adjectives: []string{"noise-cancelling", "waterproof", "fast-charging", "wireless", "portable", "low-latency", "rugged", "slim"},
		colors:     []string{"black", "white", "midnight blue", "silver", "graphite", "rose"},
		uses:       []string{"commuting", "home office", "gaming", "travel", "workouts", "video calls"},
	},
}

// products generates n products: the same ones for the same n, so a later drop of the
// supplier can be made from the first.
func (s demoSupplier) products(n int) iter.Seq[demoProduct] {
	return func(yield func(demoProduct) bool) {
		rng := rand.New(rand.NewPCG(uint64(s.id), uint64(n)))
		pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
		for i := range n {
			k := s.kinds[rng.IntN(len(s.kinds))]
			brand, adj, adj2 := pick(s.brands), pick(s.adjectives), pick(s.adjectives)
			material, color, use := pick(k.materials), pick(s.colors), pick(s.uses)
			line := string(rune('A'+rng.IntN(26))) + strconv.Itoa(10+rng.IntN(90))
			p := demoProduct{
				SKU:  fmt.Sprintf("%s-%06d", s.prefix, i+1),
				Name: fmt.Sprintf("%s %s %s %s", brand, line, capitalize(adj), titleCase(k.noun)),
				Description: fmt.Sprintf("A %s %s %s in %s, made for %s. %s finish, with a %d-year warranty.",
					adj, adj2, k.noun, material, use, capitalize(color), 1+rng.IntN(5)),
				Price:    fmt.Sprintf("%.2f", k.minPrice+rng.Float64()*(k.maxPrice-k.minPrice)),
				Currency: s.currency,
				Status:   "active",
				Attributes: map[string]any{
					"brand":    brand,
					"category": k.category,
					"color":    color,
					"material": material,
					"tags":     []string{adj, adj2, use},
					"weight_g": 100 + rng.IntN(4000),
					"stock":    rng.IntN(500),
				},
			}
			if !yield(p) {
				return
			}
		}
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func titleCase(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		words[i] = capitalize(w)
	}
	return strings.Join(words, " ")
}
