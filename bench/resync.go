package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/internal/sandbox"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
)

// resyncSlot is the stage's own slot (slot names are cluster-wide).
const resyncSlot = "bench_resync"

// resyncSuppliers is how many suppliers the stage's rows are spread over.
const resyncSuppliers = 4

// benchResync times `tidemark replicate --on-slot-lost resync` after the slot was dropped:
// from the start of the process to the slot confirming every supplier's snapshot, that is to
// every row being in the stream again. The baseline is reading the same rows out with psql
// \copy, the floor for reading the table at all.
func benchResync(ctx context.Context, env *Env, db *Database) ([]Result, error) {
	for id := int32(1); id <= resyncSuppliers; id++ {
		if _, err := copyProducts(ctx, db.Pool, id, benchDrop(id).Products(share(env.Rows, resyncSuppliers, id))); err != nil {
			return nil, fmt.Errorf("fill products: %w", err)
		}
	}
	if _, err := db.Pool.Exec(ctx, "VACUUM ANALYZE products"); err != nil {
		return nil, err
	}
	var rows int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM products").Scan(&rows); err != nil {
		return nil, err
	}
	js, closeJS, err := env.emptyStream(ctx)
	if err != nil {
		return nil, err
	}
	defer closeJS()
	// A slot that existed, as its checkpoint says, and was dropped.
	if _, err := replication.EnsureSlot(ctx, db.Pool, resyncSlot); err != nil {
		return nil, err
	}
	old, err := replication.ReadSlot(ctx, db.Pool, resyncSlot)
	if err != nil {
		return nil, err
	}
	cps, err := sink.EnsureCheckpoints(ctx, js, 1)
	if err != nil {
		return nil, err
	}
	if err := cps.Save(ctx, resyncSlot, old.ConfirmedLSN); err != nil {
		return nil, err
	}
	if _, err := db.Pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", resyncSlot); err != nil {
		return nil, err
	}

	env.Log.Info("resync: psql \\copy out")
	base, err := runProcess(ctx, env.psql(), db.URL, "-c", `\copy (SELECT * FROM products ORDER BY supplier_id, id) TO '/dev/null'`)
	if err != nil {
		return nil, err
	}

	env.Log.Info("resync: tidemark replicate --on-slot-lost resync", "rows", rows)
	cmd := exec.CommandContext(ctx, env.Bin, "replicate", "--pg-url", db.URL, "--nats-url", env.NATS.URL(), "--http-addr=",
		"--slot", resyncSlot, "--on-slot-lost", "resync", "--log-level", "info")
	out := &sandbox.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	done := func() (bool, error) {
		if !strings.Contains(out.String(), "resync done") {
			return false, nil
		}
		end, err := flushLSN(ctx, db.Pool)
		if err != nil {
			return false, err
		}
		for {
			s, err := replication.ReadSlot(ctx, db.Pool, resyncSlot)
			if err != nil {
				return false, err
			}
			if s.ConfirmedLSN >= end {
				return true, nil
			}
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	for {
		ok, err := done()
		if err != nil {
			stop()
			return nil, err
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			stop()
			return nil, fmt.Errorf("resync did not finish: %w\n%s", ctx.Err(), lastLine(out.String()))
		case <-time.After(100 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	stop()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	// Each supplier's snapshot is an epoch: an epoch_open and an epoch_close beside its rows.
	if _, _, err := checkStream(ctx, js, rows+2*resyncSuppliers); err != nil {
		return nil, err
	}
	return []Result{{
		Stage: "resync", Rows: rows, Seconds: elapsed.Seconds(), Rate: float64(rows) / elapsed.Seconds(),
		Baseline: "psql \\copy out", BaselineSeconds: base.Elapsed.Seconds(), Ratio: elapsed.Seconds() / base.Elapsed.Seconds(),
		Note: fmt.Sprintf("dropped slot: replicate --on-slot-lost resync, new slot + snapshot of %d suppliers until the slot confirmed every row; replicate CPU %.1fs",
			resyncSuppliers, cpu.Seconds()),
	}}, nil
}
