package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/snapshot"
)

// snapshotChunks is the number of chunks snapshots have committed, of the unfinished ones
// only when unfinished is true.
func (e *replEnv) snapshotChunks(ctx context.Context, t *testing.T, unfinished bool) int {
	t.Helper()
	q := "SELECT coalesce(sum(chunks), 0) FROM tidemark_snapshots"
	if unfinished {
		q += " WHERE finished_at IS NULL"
	}
	var n int
	if err := e.pool.QueryRow(ctx, q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReplicateInitialSnapshot: replicate's first run on a table that already holds rows
// publishes every row as a snapshot event; killed with SIGKILL half-way, the next run resumes,
// and the stream ends with every product exactly once. Then `tidemark snapshot --supplier`
// re-publishes one supplier while replicate streams.
func TestReplicateInitialSnapshot(t *testing.T) {
	t.Parallel()
	e, js, ctx := newReplEnvJS(t, 5*time.Minute)
	const rows = 10_000
	e.seed(t, rows)

	p := e.replicate(t, "--snapshot-chunk", "250")
	chunks := func() int { return e.snapshotChunks(ctx, t, false) }
	testenv.WaitFor(t, "a few snapshot chunks", time.Minute, func() bool { return chunks() >= 8 })
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if n := chunks(); n*250 >= rows {
		t.Fatalf("the snapshot finished (%d chunks) before the kill: the test proves nothing", n)
	}

	e.replicate(t, "--snapshot-chunk", "250")
	testenv.WaitFor(t, "the snapshot to finish", 2*time.Minute, func() bool {
		var open int
		if err := e.pool.QueryRow(ctx, "SELECT count(*) FROM tidemark_snapshots WHERE finished_at IS NULL").Scan(&open); err != nil {
			t.Fatal(err)
		}
		return open == 0
	})
	end := e.currentLSN(t)
	testenv.WaitFor(t, "the slot to confirm the snapshot", 2*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	// Each supplier's snapshot is one epoch: its open and close bound its rows in the stream
	// (the resumed one carries on with the epoch the killed run opened).
	_, all := readStream(t, js)
	epochs := map[event.Op]int{}
	for _, c := range all {
		if c.Op == event.OpEpochOpen || c.Op == event.OpEpochClose {
			epochs[c.Op]++
		}
	}
	if epochs[event.OpEpochClose] != 2 || epochs[event.OpEpochOpen] < 2 {
		t.Fatalf("epoch events %v; want a close for each supplier, after its open", epochs)
	}
	events := checkExactlyOnce(t, js, rows+epochs[event.OpEpochOpen]+epochs[event.OpEpochClose])
	seen := map[event.Key]bool{}
	for _, c := range events {
		if c.Op == event.OpEpochOpen || c.Op == event.OpEpochClose {
			continue
		}
		if c.Op != event.OpSnapshot {
			t.Fatalf("event %s for %v: want only snapshot events", c.Op, c.Key)
		}
		seen[c.Key] = true
	}
	if len(seen) != rows {
		t.Fatalf("%d products snapshotted, want %d", len(seen), rows)
	}

	// On request, one supplier again; the stream now holds its rows twice (distinct ids).
	out, err := exec.Command(e.bin, "snapshot", "--pg-url", e.url, "--supplier", "2", "--json").Output()
	if err != nil {
		t.Fatalf("tidemark snapshot: %v", err)
	}
	var results []snapshot.Result
	if err := json.Unmarshal(out, &results); err != nil || len(results) != 1 || results[0].Rows != rows/2 {
		t.Fatalf("snapshot --json = %s (%v); want one result of %d rows", out, err, rows/2)
	}
	end = e.currentLSN(t)
	testenv.WaitFor(t, "the slot to confirm the second snapshot", 2*time.Minute, func() bool { return e.slot(t).ConfirmedLSN >= end })
	// Its rows again, in an epoch of their own.
	want := uint64(rows + epochs[event.OpEpochOpen] + epochs[event.OpEpochClose] + rows/2 + 2)
	if n := streamMsgs(context.Background(), js); n != want {
		t.Fatalf("stream holds %d messages after re-snapshotting supplier 2, want %d", n, want)
	}
}
