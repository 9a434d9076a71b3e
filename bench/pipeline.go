package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/fakedrop"
)

// benchPipeline measures the whole way from a drop to search: `tidemark replicate` and
// `tidemark encode` (2 workers, hash embedder) already running, `tidemark load` of Rows new
// products, timed until every product has a live vector. All of it shares the two cores.
func benchPipeline(ctx context.Context, env *Env, db *Database) ([]Result, error) {
	file := filepath.Join(env.Dir, "pipeline.csv")
	if err := fakedrop.WriteFile(file, benchDrop(benchSupplier).Products(env.Rows)); err != nil {
		return nil, err
	}
	js, closeJS, err := env.emptyStream(ctx)
	if err != nil {
		return nil, err
	}
	defer closeJS()
	// replicate owns the PRODUCTS stream (emptied); a slot and a consumer of this stage's own.
	const slot, consumer = "bench_pipeline", "bench_pipeline"

	// Both processes write to one file: no copying goroutines, and it can be read any time.
	logPath := filepath.Join(env.Dir, "pipeline.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	out := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	start := func(args ...string) (*exec.Cmd, chan error, error) {
		cmd := exec.CommandContext(ctx, env.Bin, args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			return nil, nil, err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return cmd, done, nil
	}
	stopped := map[*exec.Cmd]bool{}
	stop := func(cmd *exec.Cmd, done chan error) {
		if stopped[cmd] {
			return
		}
		stopped[cmd] = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	common := []string{"--nats-url", env.NATS.URL(), "--http-addr=", "--log-level", "warn"}
	rep, repDone, err := start(append([]string{"replicate", "--slot", slot, "--pg-url", withAppName(db.URL, "tidemark replicate")}, common...)...)
	if err != nil {
		return nil, err
	}
	defer stop(rep, repDone)
	// Ready when the slot is streaming and the stream exists.
	if err := waitFor(ctx, 60*time.Second, repDone, out, func() (bool, error) {
		var active bool
		err := db.Pool.QueryRow(ctx, "SELECT coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = $1), false)", slot).Scan(&active)
		if err != nil || !active {
			return false, err
		}
		_, err = js.Stream(ctx, event.Stream)
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("replicate: %w", err)
	}
	profile := filepath.Join(env.Dir, "pipeline-encode.pprof")
	// No ANN index: the pipeline's target is without one (the search stage measures the
	// encoders with the indexes maintained).
	enc, encDone, err := start(append([]string{"encode", "--consumer", consumer, "--workers", "2", "--index-interval", "0",
		"--pg-url", withAppName(db.URL, "tidemark encode"), "--cpuprofile", profile}, common...)...)
	if err != nil {
		return nil, err
	}
	defer stop(enc, encDone)
	if err := waitFor(ctx, 60*time.Second, encDone, out, func() (bool, error) {
		_, err := js.Consumer(ctx, event.Stream, consumer)
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}

	env.Log.Info("pipeline: load → replicate → encode", "rows", env.Rows)
	meter, err := startCPUMeter(ctx, db.Pool)
	if err != nil {
		return nil, err
	}
	meter.watch("tidemark replicate", rep.Process.Pid)
	meter.watch("tidemark encode", enc.Process.Pid)
	t0 := time.Now()
	load, err := runProcess(ctx, env.Bin, "load", "--pg-url", withAppName(db.URL, "tidemark load"), "--supplier", fmt.Sprint(benchSupplier), file)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	meter.add("tidemark load", load.CPU)
	// Every event published, and the encoders' ack floor (they ack after their commit) at
	// the last one.
	if err := waitFor(ctx, 30*time.Minute, encDone, out, func() (bool, error) {
		st, err := js.Stream(ctx, event.Stream)
		if err != nil {
			return false, err
		}
		last := st.CachedInfo().State.LastSeq
		if last < uint64(env.Rows) {
			return false, nil
		}
		c, err := js.Consumer(ctx, event.Stream, consumer)
		if err != nil {
			return false, err
		}
		return c.CachedInfo().AckFloor.Stream >= last, nil
	}); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	secs := time.Since(t0).Seconds()
	cpu := meter.finish(ctx)
	repRSS, encRSS := vmHWM(rep.Process.Pid), vmHWM(enc.Process.Pid)
	// The profile is written when encode exits. It covers the encoders' whole run, which
	// outside the timed window is only idle fetching.
	stop(enc, encDone)
	encCPU, err := splitProfile(profile)
	if err != nil {
		return nil, err
	}
	model, _ := encoder.NewHash(encoder.DefaultDim)
	var live int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM product_embeddings WHERE model = $1 AND NOT deleted", model.Model()).Scan(&live); err != nil {
		return nil, err
	}
	if live != env.Rows {
		return nil, fmt.Errorf("%d live vectors after the last ack, want %d", live, env.Rows)
	}
	return []Result{{
		Stage: "pipeline", Rows: env.Rows, Seconds: secs, Rate: float64(env.Rows) / secs,
		PeakRSSMB: float64(max(repRSS, encRSS, load.PeakRSS)) / (1 << 20),
		Note: fmt.Sprintf("tidemark load of %d new products (%.1f s) → replicate → encode (2 workers, hash) → live vectors, all at once on the same cores; peak RSS load %.0f MB, replicate %.0f MB, encode %.0f MB",
			env.Rows, load.Elapsed.Seconds(), float64(load.PeakRSS)/(1<<20), float64(repRSS)/(1<<20), float64(encRSS)/(1<<20)),
		CPU: cpu, EncoderCPU: encCPU,
	}}, nil
}

// waitFor polls cond every 50 ms until it holds, the process behind done exits, or timeout.
func waitFor(ctx context.Context, timeout time.Duration, done chan error, out func() string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done within %s:\n%s", timeout, tail(out(), 2000))
		}
		select {
		case err := <-done:
			done <- err // for the deferred stop
			return fmt.Errorf("exited early (%v):\n%s", err, tail(out(), 2000))
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
