package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/health"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/snapshot"
	"golang.org/x/sync/errgroup"
)

// ReplicateCmd is `tidemark replicate`: set up the publication, slot and stream, then stream
// every product change from the WAL to JetStream until stopped.
type ReplicateCmd struct {
	HTTPAddr string `name:"http-addr" default:":9464" help:"Address for /metrics, /healthz and /readyz; empty disables."`

	Publication    string        `default:"${publication}" help:"Publication to create and stream."`
	Tables         []string      `default:"products" help:"Tables the publication holds (partitions publish under their root)."`
	Slot           string        `default:"${slot}" help:"Logical replication slot (pgoutput)."`
	Stream         string        `default:"${stream}" help:"JetStream stream to create and publish to (subjects ${subjects})."`
	DedupWindow    time.Duration `default:"${replicate_dedup_window}" help:"Duplicate window of the stream (Nats-Msg-Id): a second line of defence, the stream's own last message is the first."`
	Replicas       int           `default:"${replicate_replicas}" help:"Stream and checkpoint bucket replicas (NATS cluster)."`
	Format         string        `default:"native" enum:"native,debezium" env:"TIDEMARK_EVENT_FORMAT" help:"Event format: native or debezium."`
	MaxInFlight    int           `default:"${replicate_max_in_flight}" help:"Messages published and not yet acknowledged, at most."`
	AckTimeout     time.Duration `default:"${replicate_ack_timeout}" help:"Fail (and replay from the confirmed LSN) a publish not acknowledged in this time."`
	StatusInterval time.Duration `default:"${replicate_status_interval}" help:"How often acknowledged changes are confirmed to the slot and checkpointed."`
	Heartbeat      time.Duration `default:"${replicate_heartbeat}" help:"Interval of the logical-message heartbeat that keeps an idle slot moving; 0 disables."`
	FromLSN        string        `name:"from-lsn" help:"Start from this LSN instead of the saved checkpoint or the slot."`
	StopAtLSN      string        `name:"stop-at-lsn" help:"Stop cleanly once everything up to this LSN is acknowledged."`
	Snapshot       string        `default:"auto" enum:"auto,initial,never" help:"Publish the rows already in the table: auto (when this run creates the slot and the table holds rows), initial (every supplier, now), never. Interrupted snapshots resume unless never."`
	SnapshotChunk  int           `default:"2000" help:"Rows per snapshot chunk."`
	OnSlotLost     string        `name:"on-slot-lost" default:"fail" enum:"fail,resync" help:"When the slot is lost (invalidated, dropped, a new primary): fail (exit 5, saying what to run) or resync (a new slot and a snapshot of every supplier while streaming resumes)."`
	profileFlag
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

// Run sets up and streams until SIGINT/SIGTERM.
func (c *ReplicateCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	// The live heap is small and flat (a bounded number of events in flight), and every event
	// allocates its message: collecting at 4× the live heap rather than 2× costs some 20 MB
	// and saves a fifth of the CPU on a large transaction. GOGC still overrides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(300)
	}
	stopProfile, err := c.startProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	reg := newRegistry()
	runner := newSnapshotRunner(g, log, c.SnapshotChunk)
	r, snapshots, closeRepl, err := c.newReplicator(ctx, g, log, reg, runner)
	if err != nil {
		return err
	}
	defer closeRepl()
	if c.HTTPAddr != "" {
		closeState, err := registerStateCollector(g, log, reg, health.CollectorOptions{Snapshots: true}, "")
		if err != nil {
			return err
		}
		defer closeState()
	}
	log.Info("replicating", "slot", c.Slot, "publication", c.Publication, "tables", strings.Join(c.Tables, ","), "format", c.Format)
	grp, gctx := errgroup.WithContext(ctx)
	opsCtx, stopOps := context.WithCancel(gctx)
	grp.Go(func() error { return serveOps(opsCtx, log, c.HTTPAddr, reg, r.Ready) })
	snapCtx, stopSnapshots := context.WithCancel(gctx)
	grp.Go(func() error {
		defer stopOps()
		defer stopSnapshots()
		err := r.Run(gctx)
		var lost *replication.SlotLostError
		if errors.As(err, &lost) {
			return c.slotLostExit(lost)
		}
		return err
	})
	// The snapshots write their watermarks and chunks to the WAL; the replicator publishes
	// them in order with the changes around them.
	grp.Go(func() error { return runner.run(snapCtx) })
	if len(snapshots) > 0 {
		runner.kick()
	}
	if err := grp.Wait(); err != nil {
		return err
	}
	log.Info("replicate stopped", "confirmed", r.Flushed())
	return nil
}

// snapshotPlan lists the suppliers whose rows this run publishes as snapshot events: those
// with an interrupted snapshot, plus every supplier when --snapshot=initial, or when auto and
// this run created the slot on a table that already holds rows (a subscriber starting from an
// empty stream needs them).
func (c *ReplicateCmd) snapshotPlan(ctx context.Context, pool *pgxpool.Pool, created bool) ([]int32, error) {
	if c.Snapshot == "never" {
		return nil, nil
	}
	var ids []int32
	err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(supplier_id ORDER BY supplier_id), '{}')
		FROM tidemark_snapshots WHERE finished_at IS NULL`).Scan(&ids)
	if err != nil {
		return nil, fmt.Errorf("read unfinished snapshots (has tidemark migrate run?): %w", err)
	}
	all := c.Snapshot == "initial"
	if c.Snapshot == "auto" && created {
		if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM products)").Scan(&all); err != nil {
			return nil, fmt.Errorf("look for existing products: %w", err)
		}
	}
	if !all {
		return ids, nil
	}
	err = pool.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT supplier_id ORDER BY supplier_id), '{}')
		FROM (SELECT id AS supplier_id FROM suppliers UNION SELECT supplier_id FROM tidemark_snapshots
		      WHERE finished_at IS NULL) s`).Scan(&ids)
	if err != nil {
		return nil, fmt.Errorf("list suppliers: %w", err)
	}
	// Recorded before any is read, so a crash part-way resumes the whole plan.
	for _, id := range ids {
		if _, err := snapshot.Begin(ctx, pool, id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}
