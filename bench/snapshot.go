package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/tidemark/tidemark/replication"
)

// snapshotSlot is the stage's own slot: slot names are cluster-wide, and the replicate stage
// has "tidemark" in another database of the same server.
const snapshotSlot = "bench_snapshot"

// benchSnapshot times an incremental snapshot of one supplier of N rows: `tidemark snapshot`
// writing the chunks to the WAL, then `tidemark replicate` publishing them to JetStream; the
// baseline is reading the same rows out with psql \copy (SELECT …) TO /dev/null, the floor for
// reading the table at all.
func benchSnapshot(ctx context.Context, env *Env, db *Database) ([]Result, error) {
	if _, err := copyProducts(ctx, db.Pool, 1, benchDrop(1).Products(env.Rows)); err != nil {
		return nil, fmt.Errorf("fill products: %w", err)
	}
	if _, err := db.Pool.Exec(ctx, "VACUUM ANALYZE products"); err != nil {
		return nil, err
	}
	if err := replication.EnsurePublication(ctx, db.Pool, replication.DefaultPublication, []string{"products"}); err != nil {
		return nil, err
	}
	if _, err := replication.EnsureSlot(ctx, db.Pool, snapshotSlot); err != nil {
		return nil, err
	}
	js, closeJS, err := env.emptyStream(ctx)
	if err != nil {
		return nil, err
	}
	defer closeJS()

	psql := env.psql()
	env.Log.Info("snapshot: psql \\copy out")
	base, err := runProcess(ctx, psql, db.URL, "-c", `\copy (SELECT * FROM products WHERE supplier_id = 1 ORDER BY id) TO '/dev/null'`)
	if err != nil {
		return nil, err
	}

	env.Log.Info("snapshot: tidemark snapshot", "rows", env.Rows)
	snap, err := runProcess(ctx, env.Bin, "snapshot", "--pg-url", db.URL, "--supplier", "1", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	end, err := flushLSN(ctx, db.Pool)
	if err != nil {
		return nil, err
	}
	env.Log.Info("snapshot: tidemark replicate publishes the chunks", "stop_at", end)
	rep, err := runProcess(ctx, env.Bin, "replicate", "--pg-url", db.URL, "--nats-url", env.NATS.URL(),
		"--http-addr=", "--slot", snapshotSlot, "--snapshot", "never", "--stop-at-lsn", end.String(), "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	// The snapshot of supplier 1 is one epoch: its epoch_open and epoch_close beside the rows.
	_, info, err := checkStream(ctx, js, env.Rows+2)
	if err != nil {
		return nil, err
	}
	total := snap.Elapsed + rep.Elapsed
	return []Result{
		{
			Stage: "snapshot write", Rows: env.Rows, Seconds: snap.Elapsed.Seconds(), Rate: float64(env.Rows) / snap.Elapsed.Seconds(),
			Baseline: "psql \\copy out", BaselineSeconds: base.Elapsed.Seconds(), Ratio: snap.Elapsed.Seconds() / base.Elapsed.Seconds(),
			PeakRSSMB: float64(snap.PeakRSS) / (1 << 20),
			Note:      "tidemark snapshot: watermarks and chunks of 2000 rows written to the WAL",
		},
		{
			Stage: "snapshot end-to-end", Rows: env.Rows, Seconds: total.Seconds(), Rate: float64(env.Rows) / total.Seconds(),
			PeakRSSMB: float64(max(snap.PeakRSS, rep.PeakRSS)) / (1 << 20),
			Note:      "snapshot written, then published by replicate: " + strconv.Itoa(int(info.State.Msgs)) + " events in the stream",
		},
	}, nil
}
