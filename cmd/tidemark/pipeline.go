package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
)

// The wiring of replicate and encode, shared with demo, which runs both in-process.

// demoCommands are the replicate and encode commands the demo runs in-process, built from the
// packages' defaults, which are also their flags' defaults (TestDemoCommands checks that they
// are what the command line runs with no flags), but for the demo's own choices: no HTTP
// servers, no snapshot (the demo starts from an empty table: every row reaches the stream as
// an insert) and one worker per encoder (two encoders of one worker each stand for two
// `tidemark encode` processes sharing the durable consumer). The environment does not reach
// them: the demo must not stream Debezium events because TIDEMARK_EVENT_FORMAT happens to be
// set. Fields the demo does not read (the snapshot runner's, the openai embedder's, the index
// interval) are left zero.
func demoCommands() (ReplicateCmd, EncodeCmd) {
	repl, pub, stream, enc := replication.DefaultConfig(), sink.DefaultOptions(), sink.DefaultStreamConfig(), encoder.DefaultConfig()
	rc := ReplicateCmd{
		Publication: repl.Publication, Tables: []string{"products"}, Slot: repl.Slot,
		Stream: stream.Name, DedupWindow: stream.Duplicates, Replicas: stream.Replicas,
		Format: string(pub.Format), MaxInFlight: pub.MaxInFlight, AckTimeout: pub.AckTimeout,
		StatusInterval: repl.StatusInterval, Heartbeat: repl.Heartbeat,
		Snapshot: "never",
	}
	ec := EncodeCmd{
		EmbedderFlags: EmbedderFlags{Embedder: "hash", Dim: 384},
		Stream:        enc.Stream, Consumer: enc.Consumer, Workers: 1, Batch: enc.Batch,
		BatchWait: enc.BatchWait, AckWait: enc.AckWait, MaxDeliver: enc.MaxDeliver,
		MaxAckPending: enc.MaxAckPending,
	}
	return rc, ec
}

// newReplicator sets up the publication, the slot (before the stream: once the stream exists the
// slot already retains WAL), the stream and the checkpoint bucket, and builds the replicator.
// The returned close releases its NATS connection and publisher, after Run has returned. With
// --on-slot-lost resync, runner re-runs the snapshots of a resync; nil, a lost slot fails.
func (c *ReplicateCmd) newReplicator(ctx context.Context, g *Globals, log *slog.Logger, reg prometheus.Registerer, runner *snapshotRunner) (r *replication.Replicator, snapshots []int32, closeFn func(), err error) {
	from, err := parseLSNFlag("from-lsn", c.FromLSN)
	if err != nil {
		return nil, nil, nil, err
	}
	stopAt, err := parseLSNFlag("stop-at-lsn", c.StopAtLSN)
	if err != nil {
		return nil, nil, nil, err
	}
	pubOpts := sink.Options{Stream: c.Stream, Format: event.Format(c.Format), MaxInFlight: c.MaxInFlight, AckTimeout: c.AckTimeout}
	streamCfg := sink.StreamConfig{Name: c.Stream, Duplicates: c.DedupWindow, Replicas: c.Replicas}
	replCfg := replication.Config{
		ConnString:     g.Postgres.URL,
		Slot:           c.Slot,
		Publication:    c.Publication,
		StartLSN:       from,
		StopAtLSN:      stopAt,
		StatusInterval: c.StatusInterval,
		Heartbeat:      c.Heartbeat,
	}
	// Before anything is created: a slot left by a run that then fails on a flag holds WAL
	// with nobody to read it.
	if err := errors.Join(replCfg.Validate(), pubOpts.Validate(), streamCfg.Validate()); err != nil {
		return nil, nil, nil, err
	}
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return nil, nil, nil, err
	}
	defer pool.Close()
	if _, err := replication.CheckWALLevel(ctx, pool); err != nil {
		return nil, nil, nil, err
	}
	if err := replication.EnsurePublication(ctx, pool, c.Publication, c.Tables); err != nil {
		return nil, nil, nil, err
	}
	keep, err := c.slotWasLost(ctx, g, log, pool)
	if err != nil {
		return nil, nil, nil, err
	}
	created := false
	if !keep {
		if created, err = replication.EnsureSlot(ctx, pool, c.Slot); err != nil {
			return nil, nil, nil, err
		}
	}
	if created {
		log.Info("created replication slot", "slot", c.Slot)
	}
	if snapshots, err = c.snapshotPlan(ctx, pool, created); err != nil {
		return nil, nil, nil, err
	}
	pool.Close()

	nc, err := g.NATSConn(log, "replicate", nats.Timeout(serviceConnectTimeout))
	if err != nil {
		return nil, nil, nil, err
	}
	pub, err := sink.NewPublisher(nc, pubOpts, log, reg)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	closeFn = func() {
		pub.Close()
		nc.Close()
	}
	defer func() {
		if err != nil {
			closeFn()
		}
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	if _, err := sink.EnsureStream(ctx, js, streamCfg); err != nil {
		return nil, nil, nil, err
	}
	cps, err := sink.EnsureCheckpoints(ctx, js, c.Replicas)
	if err != nil {
		return nil, nil, nil, err
	}
	var onLost func(context.Context, *replication.SlotLostError) (pglogrepl.LSN, error)
	if c.OnSlotLost == "resync" && runner != nil {
		onLost = (&resyncer{c: c, g: g, log: log, cps: cps, runner: runner}).resync
	}
	replCfg.Checkpoints, replCfg.OnSlotLost = cps, onLost
	r, err = replication.New(replCfg, pub, log, reg)
	if err != nil {
		return nil, nil, nil, err
	}
	return r, snapshots, closeFn, nil
}

// newEncoder connects to PostgreSQL and NATS and builds an encoder (one process's worth of
// workers) and the vector store it writes to. The returned close, called after Run has
// returned, makes sure the last acks reached the server and closes the connections.
func (c *EncodeCmd) newEncoder(ctx context.Context, g *Globals, log *slog.Logger, reg prometheus.Registerer, name string) (enc *encoder.Encoder, store *encoder.Store, closeFn func(), err error) {
	emb, err := c.EmbedderFlags.New(log)
	if err != nil {
		return nil, nil, nil, err
	}
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return nil, nil, nil, err
	}
	store, err = encoder.OpenStore(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	nc, err := g.NATSConn(log, name, nats.Timeout(serviceConnectTimeout))
	if err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	closeFn = func() {
		// Acks are fire-and-forget publishes: make sure the last batch's reached the server.
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			log.Warn("flush acks to nats", "err", err)
		}
		nc.Close()
		pool.Close()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		closeFn()
		return nil, nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	enc, err = encoder.New(encoder.Config{
		Stream: c.Stream, Consumer: c.Consumer, Workers: c.Workers, Batch: c.Batch,
		BatchWait: c.BatchWait, AckWait: c.AckWait, MaxDeliver: c.MaxDeliver,
		MaxAckPending: c.MaxAckPending, ExitIdle: c.ExitIdle,
	}, js, store, emb, log, reg)
	if err != nil {
		closeFn()
		return nil, nil, nil, err
	}
	return enc, store, closeFn, nil
}
