package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
	"golang.org/x/sync/errgroup"
)

// ReplicateCmd is `tidemark replicate`: set up the publication, slot and stream, then stream
// every product change from the WAL to JetStream until stopped.
type ReplicateCmd struct {
	HTTPAddr string `name:"http-addr" default:":9464" help:"Address for /metrics, /healthz and /readyz; empty disables."`

	Publication    string        `default:"tidemark" help:"Publication to create and stream."`
	Tables         []string      `default:"products" help:"Tables the publication holds (partitions publish under their root)."`
	Slot           string        `default:"tidemark" help:"Logical replication slot (pgoutput)."`
	DedupWindow    time.Duration `default:"2m" help:"JetStream duplicate window of the PRODUCTS stream (Nats-Msg-Id)."`
	Replicas       int           `default:"1" help:"Stream and checkpoint bucket replicas (NATS cluster)."`
	Format         string        `default:"native" enum:"native,debezium" help:"Event format: native or debezium."`
	MaxInFlight    int           `default:"4096" help:"Messages published and not yet acknowledged, at most."`
	AckTimeout     time.Duration `default:"10s" help:"Fail (and replay from the confirmed LSN) a publish not acknowledged in this time."`
	StatusInterval time.Duration `default:"1s" help:"How often acknowledged changes are confirmed to the slot and checkpointed."`
	Heartbeat      time.Duration `default:"10s" help:"Interval of the logical-message heartbeat that keeps an idle slot moving; 0 disables."`
	FromLSN        string        `name:"from-lsn" help:"Start from this LSN instead of the saved checkpoint or the slot."`
	StopAtLSN      string        `name:"stop-at-lsn" help:"Stop cleanly once everything up to this LSN is acknowledged."`
	CPUProfile     string        `name:"cpuprofile" hidden:"" type:"path" help:"Write a CPU profile of the run to this file (for the benchmark)."`
}

func parseLSNFlag(name, v string) (pglogrepl.LSN, error) {
	if v == "" {
		return 0, nil
	}
	lsn, err := pglogrepl.ParseLSN(v)
	if err != nil {
		return 0, fmt.Errorf("--%s %q: want an LSN like 16/B374D848: %w", name, v, err)
	}
	return lsn, nil
}

// startCPUProfile profiles the process until the returned function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// Run sets up and streams until SIGINT/SIGTERM.
func (c *ReplicateCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	from, err := parseLSNFlag("from-lsn", c.FromLSN)
	if err != nil {
		return err
	}
	stopAt, err := parseLSNFlag("stop-at-lsn", c.StopAtLSN)
	if err != nil {
		return err
	}
	if c.CPUProfile != "" {
		stopProfile, err := startCPUProfile(c.CPUProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := replication.CheckWALLevel(ctx, pool); err != nil {
		return err
	}
	if err := replication.EnsurePublication(ctx, pool, c.Publication, c.Tables); err != nil {
		return err
	}
	// The slot before the stream: once the stream exists the slot already retains WAL.
	created, err := replication.EnsureSlot(ctx, pool, c.Slot)
	if err != nil {
		return err
	}
	if created {
		log.Info("created replication slot", "slot", c.Slot)
	}
	pool.Close()

	nc, err := g.NATSConn(log, "replicate")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := newRegistry()
	pub, err := sink.NewJetStream(nc, sink.Options{
		Format: replication.Format(c.Format), MaxInFlight: c.MaxInFlight, AckTimeout: c.AckTimeout,
	}, log, reg)
	if err != nil {
		return err
	}
	defer pub.Close()
	if _, err := sink.EnsureStream(ctx, pub.JetStream(), sink.StreamConfig{Duplicates: c.DedupWindow, Replicas: c.Replicas}); err != nil {
		return err
	}
	cps, err := sink.EnsureCheckpoints(ctx, pub.JetStream(), c.Replicas)
	if err != nil {
		return err
	}
	r, err := replication.New(replication.Config{
		ConnString:     g.Postgres.URL,
		Slot:           c.Slot,
		Publication:    c.Publication,
		StartLSN:       from,
		StopAtLSN:      stopAt,
		StatusInterval: c.StatusInterval,
		Heartbeat:      c.Heartbeat,
		Checkpoints:    cps,
	}, pub, log, reg)
	if err != nil {
		return err
	}
	log.Info("replicating", "slot", c.Slot, "publication", c.Publication, "tables", strings.Join(c.Tables, ","), "format", c.Format)
	grp, gctx := errgroup.WithContext(ctx)
	opsCtx, stopOps := context.WithCancel(gctx)
	grp.Go(func() error { return serveOps(opsCtx, log, c.HTTPAddr, reg, r.Ready) })
	grp.Go(func() error {
		defer stopOps()
		return r.Run(gctx)
	})
	if err := grp.Wait(); err != nil {
		return err
	}
	log.Info("replicate stopped", "confirmed", r.Flushed())
	return nil
}
