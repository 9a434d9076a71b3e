package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/replication"
)

// benchReplicate drains one Rows-row transaction three ways: tidemark replicate
// (--stop-at-lsn) and pg_recvlogical (pgoutput, same publication, slots created at the same
// point), twice each, alternately; and a raw JetStream async-publish loop of messages of the
// same size. Then it measures commit→ack latency at a steady 7k changes/s.
func benchReplicate(ctx context.Context, env *Env, db *Database) ([]Result, error) {
	if err := replication.EnsurePublication(ctx, db.Pool, replication.DefaultPublication, []string{"products"}); err != nil {
		return nil, err
	}
	// Two slots for each side, created at the same point: each side drains the transaction
	// twice, alternately, and the best of its two runs counts. The first tidemark slot is the
	// default one, which the latency run then goes on with.
	tidemarkSlots := []string{"tidemark", "bench_tidemark_2"}
	recvSlots := []string{"bench_recvlogical", "bench_recvlogical_2"}
	for _, slot := range append(append([]string{}, tidemarkSlots...), recvSlots...) {
		if _, err := replication.EnsureSlot(ctx, db.Pool, slot); err != nil {
			return nil, err
		}
	}
	// As in the sink: nats.go's own limit above the window, so it never stalls.
	js, closeJS, err := env.jetStream(jetstream.WithPublishAsyncMaxPending(2*4096 + 16))
	if err != nil {
		return nil, err
	}
	defer closeJS()
	_ = js.DeleteStream(ctx, event.Stream)

	env.Log.Info("replicate: writing one transaction", "rows", env.Rows)
	if _, err := copyProducts(ctx, db.Pool, 1, benchDrop(1).Products(env.Rows)); err != nil {
		return nil, err
	}
	end, err := insertLSN(ctx, db.Pool)
	if err != nil {
		return nil, err
	}
	// The slots only see flushed WAL.
	for {
		fl, err := flushLSN(ctx, db.Pool)
		if err != nil {
			return nil, err
		}
		if fl >= end {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	recv, err := findRecvLogical(env.PG.BinDir())
	if err != nil {
		return nil, err
	}
	// Each run starts after a checkpoint, so none pays for the one the last write started.
	checkpoint := func() error {
		if _, err := db.Pool.Exec(ctx, "CHECKPOINT"); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		return nil
	}
	var base, rep Process
	var baseCPU, repCPU []cpuLine
	for round := range 2 {
		if err := checkpoint(); err != nil {
			return nil, err
		}
		env.Log.Info("replicate: pg_recvlogical", "endpos", end, "round", round+1)
		meter, err := startCPUMeter(ctx, db.Pool)
		if err != nil {
			return nil, err
		}
		b, err := runProcess(ctx, recv, "-d", db.URL, "--slot", recvSlots[round], "--start",
			"--endpos", end.String(), "--no-loop", "-o", "proto_version=1", "-o", "publication_names=tidemark",
			"-f", "/dev/null")
		if err != nil {
			meter.finish(ctx)
			return nil, err
		}
		meter.add("pg_recvlogical", b.CPU)
		bcpu := meter.finish(ctx)
		if err := checkpoint(); err != nil {
			return nil, err
		}
		_ = js.DeleteStream(ctx, event.Stream)
		env.Log.Info("replicate: tidemark replicate", "stop_at", end, "round", round+1)
		args := []string{"replicate", "--pg-url", db.URL, "--nats-url", env.NATS.URL(), "--slot", tidemarkSlots[round],
			"--http-addr=", "--stop-at-lsn", end.String(), "--log-level", "warn"}
		// BENCH_REPLICATE_ARGS adds flags to both runs (for tuning: --max-in-flight 16384).
		args = append(args, strings.Fields(os.Getenv("BENCH_REPLICATE_ARGS"))...)
		// BENCH_CPUPROFILE=file profiles the first run (go tool pprof bin/tidemark file).
		if p := os.Getenv("BENCH_CPUPROFILE"); p != "" && round == 0 {
			args = append(args, "--cpuprofile", p)
		}
		if meter, err = startCPUMeter(ctx, db.Pool); err != nil {
			return nil, err
		}
		// BENCH_NATS_CPUPROFILE=file profiles this process, the embedded nats-server, during
		// the first run (go tool pprof file).
		stopProfile, err := profileSelf(os.Getenv("BENCH_NATS_CPUPROFILE"), round == 0)
		if err != nil {
			return nil, err
		}
		r, err := runProcess(ctx, env.Bin, args...)
		stopProfile()
		if err != nil {
			meter.finish(ctx)
			return nil, err
		}
		meter.add("tidemark replicate", r.CPU)
		rcpu := meter.finish(ctx)
		env.Log.Info("replicate: round", "round", round+1, "pg_recvlogical", b.Elapsed, "tidemark", r.Elapsed,
			"pg_recvlogical_cpu", formatCPU(bcpu, env.Rows), "tidemark_cpu", formatCPU(rcpu, env.Rows))
		if round == 0 || b.Elapsed < base.Elapsed {
			base, baseCPU = b, bcpu
		}
		if round == 0 || r.Elapsed < rep.Elapsed {
			rep, repCPU = r, rcpu
		}
		if round == 0 {
			if _, _, err := checkStream(ctx, js, env.Rows); err != nil {
				return nil, err
			}
		}
	}
	for _, slot := range append(tidemarkSlots[1:], recvSlots...) {
		if _, err := db.Pool.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
			return nil, fmt.Errorf("drop slot %s: %w", slot, err)
		}
	}
	stream, info, err := checkStream(ctx, js, env.Rows)
	if err != nil {
		return nil, err
	}
	sample, err := stream.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return nil, err
	}

	// What exactly-once publishing costs, apart from Postgres and decoding: the same messages
	// published as the replicator does (chained, one ack per run) and plainly (every message
	// acked, no expectations), alternately, the best of two each.
	var raw, chained time.Duration
	for round := range 2 {
		for _, chain := range []bool{false, true} {
			env.Log.Info("replicate: raw JetStream async publish", "messages", env.Rows, "chained", chain, "round", round+1)
			d, err := rawPublish(ctx, js, sample.Data, env.Rows, chain)
			if err != nil {
				return nil, err
			}
			best := &raw
			if chain {
				best = &chained
			}
			if round == 0 || d < *best {
				*best = d
			}
		}
	}

	env.Log.Info("replicate: commit→ack latency at 7k changes/s")
	p50, p99, n, err := latency(ctx, env, db.URL)
	if err != nil {
		return nil, err
	}

	rows := env.Rows
	return []Result{
		{
			Stage: "replicate", Rows: rows, Seconds: rep.Elapsed.Seconds(), Rate: float64(rows) / rep.Elapsed.Seconds(),
			Baseline: "pg_recvlogical", BaselineSeconds: base.Elapsed.Seconds(), Ratio: rep.Elapsed.Seconds() / base.Elapsed.Seconds(),
			PeakRSSMB: float64(rep.PeakRSS) / (1 << 20),
			Note: fmt.Sprintf("one %d-row transaction (one COPY of generated products), pgoutput decode + JSON + async publish, one ack per run of messages; pg_recvlogical peak RSS %.0f MB; tidemark's run: %s; pg_recvlogical's run: %s",
				rows, float64(base.PeakRSS)/(1<<20), formatCPU(repCPU, rows), formatCPU(baseCPU, rows)),
			CPU: repCPU,
		},
		{
			Stage: "replicate-vs-jetstream", Rows: rows, Seconds: rep.Elapsed.Seconds(), Rate: float64(rows) / rep.Elapsed.Seconds(),
			Baseline: "raw PublishMsgAsync", BaselineSeconds: raw.Seconds(), Ratio: rep.Elapsed.Seconds() / raw.Seconds(),
			Note: fmt.Sprintf("the same number of %d-byte messages with Msg-Ids, 4096 in flight, no Postgres", len(sample.Data)),
		},
		{
			Stage: "publish-expectations", Rows: rows, Seconds: chained.Seconds(), Rate: float64(rows) / chained.Seconds(),
			Baseline: "the same without expectations", BaselineSeconds: raw.Seconds(), Ratio: chained.Seconds() / raw.Seconds(),
			Note: "raw publish as the replicator does it: each message carrying Nats-Expected-Last-Msg-Id of the one before (the first Nats-Expected-Last-Sequence), one ack per 256 messages; the baseline acks every message",
		},
		{
			Stage: "replicate-latency", Rows: n, Seconds: p99,
			Note: fmt.Sprintf("commit→ack at a steady 7k changes/s (100 tx/s, each a COPY of 70 generated products, synchronous_commit=on): p50 %.0f ms, p99 %.0f ms (from the tidemark_commit_to_ack_seconds histogram)", p50*1000, p99*1000),
		},
	}, nil
}

func findRecvLogical(binDir string) (string, error) {
	cands := []string{filepath.Join(binDir, "pg_recvlogical")}
	more, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_recvlogical")
	cands = append(cands, more...)
	if p, err := exec.LookPath("pg_recvlogical"); err == nil {
		cands = append(cands, p)
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	return "", errors.New("pg_recvlogical not found")
}

// rawPublish publishes n copies of data with distinct Msg-Ids to a stream of its own, at
// most 4096 unacknowledged, and waits for every ack: the ceiling for the publish side. With
// chain it publishes as the replicator does: each message expects the one before it as the
// stream's last, and only every 256th (and the last) asks for an ack.
func rawPublish(ctx context.Context, js jetstream.JetStream, data []byte, n int, chain bool) (time.Duration, error) {
	_ = js.DeleteStream(ctx, "BENCH_RAW")
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "BENCH_RAW", Subjects: []string{"benchraw.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		return 0, err
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), "BENCH_RAW") }()
	start := time.Now()
	// At most 4096 messages unacknowledged, as the replicator's --max-in-flight: chained, a
	// future stands for a run of 256. (Unbounded, the messages without a reply outrun the
	// stream's ingest queue, which drops them with a 429.)
	window := 4096
	if chain {
		window = 4096 / 256
	}
	futs := make(chan jetstream.PubAckFuture, window)
	errc := make(chan error, 1)
	go func() {
		var first error
		for f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				if first == nil {
					first = err
				}
			}
		}
		errc <- first
	}()
	prev := ""
	for i := 0; i < n; i++ {
		id := "0/1:" + strconv.Itoa(i)
		msg := &nats.Msg{Subject: "benchraw.1.insert", Data: data, Header: nats.Header{jetstream.MsgIDHeader: []string{id}}}
		if chain && i == 0 {
			msg.Header.Set(jetstream.ExpectedLastSeqHeader, "0")
		} else if chain {
			msg.Header.Set(jetstream.ExpectedLastMsgIDHeader, prev)
		}
		prev = id
		if chain && i%256 != 255 && i != n-1 {
			if err := js.Conn().PublishMsg(msg); err != nil {
				close(futs)
				<-errc
				return 0, err
			}
			continue
		}
		f, err := js.PublishMsgAsync(msg)
		if err != nil {
			close(futs)
			<-errc
			return 0, err
		}
		futs <- f
	}
	close(futs)
	if err := <-errc; err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// latency runs replicate as a service while a writer commits 70-row transactions 100 times
// a second for 20s, then reads the commit→ack histogram from /metrics.
func latency(ctx context.Context, env *Env, url string) (p50, p99 float64, n int, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	largs := []string{"replicate", "--pg-url", url, "--nats-url", env.NATS.URL(),
		"--http-addr", addr, "--log-level", "warn"}
	// BENCH_LATENCY_CPUPROFILE=file profiles the latency run.
	if p := os.Getenv("BENCH_LATENCY_CPUPROFILE"); p != "" {
		largs = append(largs, "--cpuprofile", p)
	}
	cmd := exec.CommandContext(ctx, env.Bin, largs...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i > 300 {
			return 0, 0, 0, errors.New("replicate not ready within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Stated rather than inherited (the sandbox's default is on too): with asynchronous
	// commits the walsender may only send a commit up to wal_writer_delay (200ms) later.
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return 0, 0, 0, err
	}
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	writer, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, 0, 0, err
	}
	defer writer.Close()
	// Warm up: a fresh walsender first re-reads the WAL from the slot's restart point (the
	// whole big transaction), which is start-up cost, not steady-state latency.
	// Products after the big transaction's: the probe, then the writer's.
	drop, next := benchDrop(1), env.Rows
	if _, err := copyProducts(ctx, writer, 1, drop.Range(next, next+1)); err != nil {
		return 0, 0, 0, err
	}
	next++
	probeLSN, err := insertLSN(ctx, writer)
	if err != nil {
		return 0, 0, 0, err
	}
	for i := 0; ; i++ {
		var confirmed string
		if err := writer.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'tidemark'").Scan(&confirmed); err != nil {
			return 0, 0, 0, err
		}
		if c, _ := pglogrepl.ParseLSN(confirmed); c >= probeLSN {
			break
		}
		if i > 1200 {
			return 0, 0, 0, errors.New("replicate did not catch up within 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	before, err := scrapeHistogram(addr)
	if err != nil {
		return 0, 0, 0, err
	}
	const perTx, txPerSec, seconds = 70, 100, 20
	t := time.NewTicker(time.Second / txPerSec)
	defer t.Stop()
	for i := 0; i < txPerSec*seconds; i++ {
		<-t.C
		if _, err := copyProducts(ctx, writer, 1, drop.Range(next, next+perTx)); err != nil {
			return 0, 0, 0, err
		}
		next += perTx
	}
	time.Sleep(2 * time.Second)
	after, err := scrapeHistogram(addr)
	if err != nil {
		return 0, 0, 0, err
	}
	bounds := after.bounds
	counts := make([]float64, len(after.counts))
	for i := range counts {
		counts[i] = after.counts[i] - before.counts[i]
	}
	total := counts[len(counts)-1]
	if total == 0 {
		return 0, 0, 0, errors.New("no commit→ack observations in /metrics")
	}
	return quantile(bounds, counts, 0.5*total), quantile(bounds, counts, 0.99*total), int(total), nil
}

type histogram struct{ bounds, counts []float64 }

// scrapeHistogram reads tidemark_commit_to_ack_seconds from /metrics.
func scrapeHistogram(addr string) (histogram, error) {
	var h histogram
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "tidemark_commit_to_ack_seconds_bucket{") {
			continue
		}
		le := line[strings.Index(line, `le="`)+4:]
		le = le[:strings.Index(le, `"`)]
		v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
		b := math.Inf(1)
		if le != "+Inf" {
			b, _ = strconv.ParseFloat(le, 64)
		}
		h.bounds = append(h.bounds, b)
		h.counts = append(h.counts, v)
	}
	if len(h.counts) == 0 {
		return h, errors.New("no tidemark_commit_to_ack_seconds in /metrics")
	}
	return h, sc.Err()
}

// quantile interpolates linearly inside the histogram bucket holding rank.
func quantile(bounds, counts []float64, rank float64) float64 {
	lower, prev := 0.0, 0.0
	for i, c := range counts {
		if c >= rank {
			if math.IsInf(bounds[i], 1) {
				return lower
			}
			if c == prev {
				return bounds[i]
			}
			return lower + (bounds[i]-lower)*(rank-prev)/(c-prev)
		}
		lower, prev = bounds[i], c
	}
	return lower
}

// checkStream checks that the PRODUCTS stream holds exactly want messages after a run.
func checkStream(ctx context.Context, js jetstream.JetStream, want int) (jetstream.Stream, *jetstream.StreamInfo, error) {
	stream, err := js.Stream(ctx, event.Stream)
	if err != nil {
		return nil, nil, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	if info.State.Msgs != uint64(want) {
		return nil, nil, fmt.Errorf("stream %s holds %d messages after replicate, want %d", event.Stream, info.State.Msgs, want)
	}
	return stream, info, nil
}
