package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	"github.com/tidemark/tidemark/replication"
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
	rc, ec := demoCommands()

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
	r, _, closeRepl, err := rc.newReplicator(ctx, dg, log.With("component", "replicate"), d.replReg, nil)
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
