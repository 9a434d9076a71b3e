package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/fakedrop"
)

// encodeSuppliers is one supplier for each trade of the generator.
var encodeSuppliers = int32(len(fakedrop.Suppliers))

// The encode stage measures the hash embedder alone (texts/s on one core) and the encoders
// end to end: N insert events already in a stream → `tidemark encode --workers 2` → N live
// vectors. Its baseline is the per-row worker the encoders replace: one event per fetch, one
// embedding, one INSERT and one ack at a time (`--batch 1 --workers 1`), timed on a sample
// and scaled to N.
func benchEncode(ctx context.Context, env *Env, db *Database) ([]Result, error) {
	n := env.Rows
	hashRes, err := benchHashEmbedder(ctx, n)
	if err != nil {
		return nil, err
	}
	for id := int32(1); id <= encodeSuppliers; id++ {
		if _, err := copyProducts(ctx, db.Pool, id, benchDrop(id).Products(share(n, encodeSuppliers, id))); err != nil {
			return nil, fmt.Errorf("insert products: %w", err)
		}
	}

	const stream = "BENCH_ENCODE"
	js, closeJS, err := env.insertStream(ctx, db.Pool, stream)
	if err != nil {
		return nil, err
	}
	defer closeJS()

	// No ANN index, as in the pipeline: the search stage measures the encoders with them.
	args := []string{"encode", "--pg-url", withAppName(db.URL, "tidemark encode"), "--nats-url", env.NATS.URL(), "--stream", stream, "--http-addr", "",
		"--log-level", "warn", "--index-interval", "0"}
	if lv := os.Getenv("BENCH_ENCODE_LOG"); lv != "" {
		args = append(args, "--log-level", lv)
	}
	// The encoders' run is profiled, to split their CPU by what it does; BENCH_ENCODE_CPUPROFILE
	// keeps the profile.
	profile := filepath.Join(env.Dir, "encode.pprof")
	if p := os.Getenv("BENCH_ENCODE_CPUPROFILE"); p != "" {
		profile = p
	}
	model, _ := encoder.NewHash(encoder.DefaultDim)
	run, err := runEncode(ctx, db.Pool, js, stream, "bench", env.Bin, append(args, "--cpuprofile", profile, "--workers", "2", "--consumer", "bench"), model.Model(), n, true)
	if err != nil {
		return nil, err
	}
	secs, rss := run.secs, run.rss
	encCPU, err := splitProfile(profile)
	if err != nil {
		return nil, err
	}
	// The per-row baseline on a sample (another model, so nothing is skipped as unchanged).
	sample := min(n, 5000)
	base, _ := encoder.NewHash(encoder.DefaultDim + 1)
	baseRun, err := runEncode(ctx, db.Pool, js, stream, "baseline", env.Bin, append(args, "--workers", "1", "--batch", "1", "--consumer", "baseline",
		"--dim", fmt.Sprint(encoder.DefaultDim+1)), base.Model(), sample, false)
	if err != nil {
		return nil, err
	}
	baseSecs := baseRun.secs
	baseScaled := baseSecs * float64(n) / float64(sample)
	e2e := Result{Stage: "encode", Rows: n, Seconds: secs, Rate: float64(n) / secs,
		Baseline: "per-row worker (batch 1)", BaselineSeconds: baseScaled, Ratio: secs / baseScaled, PeakRSSMB: float64(rss) / (1 << 20),
		Note: fmt.Sprintf("events in the stream → live vectors, 2 workers, hash embedder; baseline timed on %d rows and scaled", sample),
		CPU:  run.cpu, EncoderCPU: encCPU}
	return []Result{hashRes, e2e}, nil
}

// benchHashEmbedder embeds texts on one core.
func benchHashEmbedder(ctx context.Context, n int) (Result, error) {
	h, err := encoder.NewHash(encoder.DefaultDim)
	if err != nil {
		return Result{}, err
	}
	texts := make([]string, 999)
	for i := range texts {
		p := benchDrop(int32(1 + i%3)).Product(i)
		texts[i] = encoder.Text(p.Name, p.Description, p.Attributes.AppendJSON(nil))
	}
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	start := time.Now()
	done := 0
	for done < n {
		if _, err := h.Embed(ctx, texts[:min(len(texts), n-done)]); err != nil {
			return Result{}, err
		}
		done += min(len(texts), n-done)
	}
	secs := time.Since(start).Seconds()
	return Result{Stage: "encode/hash-embedder", Rows: n, Seconds: secs, Rate: float64(n) / secs,
		Note: fmt.Sprintf("texts/s on one core (GOMAXPROCS=1), 384 dimensions, texts of generated products (mean %d bytes)", meanLen(texts))}, nil
}

func meanLen(texts []string) int {
	sum := 0
	for _, t := range texts {
		sum += len(t)
	}
	return sum / len(texts)
}

// insertStream connects to NATS and fills stream with publishInserts; closeJS closes the
// connection.
func (e *Env) insertStream(ctx context.Context, pool *pgxpool.Pool, stream string) (js jetstream.JetStream, closeJS func(), err error) {
	if js, closeJS, err = e.jetStream(jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		return nil, nil, err
	}
	e.Log.Info("publishing an insert event for every product", "stream", stream)
	n, err := publishInserts(ctx, pool, js, stream)
	if err != nil {
		closeJS()
		return nil, nil, err
	}
	e.Log.Info("insert events published", "stream", stream, "events", n)
	return js, closeJS, nil
}

// publishInserts creates stream afresh, its subjects the lower-case stream name and below,
// and publishes an insert event into it for every product, as replicate would; it returns
// how many it published.
func publishInserts(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, stream string) (int, error) {
	subject := strings.ToLower(stream)
	_ = js.DeleteStream(ctx, stream)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject + ".>"},
		Storage: jetstream.FileStorage, Duplicates: time.Minute}); err != nil {
		return 0, fmt.Errorf("create stream: %w", err)
	}
	base, err := insertLSN(ctx, pool)
	if err != nil {
		return 0, err
	}
	lsn := event.LSN(base)
	rows, err := pool.Query(ctx, `SELECT supplier_id, id, sku, name, description, price::text, attributes::text FROM products`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		sup, id                int64
		sku, name, desc, price string
		attrs                  string
		i                      int
	)
	raw := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	for rows.Next() {
		if err := rows.Scan(&sup, &id, &sku, &name, &desc, &price, &attrs); err != nil {
			return i, err
		}
		i++
		commit := lsn + event.LSN(i)
		ch := event.Change{Op: event.OpInsert, Schema: "public", Table: "products",
			Key: event.Key{SupplierID: sup, ID: id},
			After: event.Row{{Name: "id", Value: raw(id)}, {Name: "supplier_id", Value: raw(sup)}, {Name: "sku", Value: raw(sku)},
				{Name: "name", Value: raw(name)}, {Name: "description", Value: raw(desc)}, {Name: "price", Value: raw(price)},
				{Name: "attributes", Value: json.RawMessage(attrs)}},
			Source: event.Source{Slot: "bench", LSN: commit, CommitLSN: commit, CommitTS: time.Now()},
			TsMs:   time.Now().UnixMilli()}
		data, err := json.Marshal(ch)
		if err != nil {
			return i, err
		}
		// A loaded machine can leave the server's acks behind the window for long: wait for room
		// rather than fail (nats.go's default stall wait is 200 ms).
		if _, err := js.PublishAsync(fmt.Sprintf("%s.%d.insert", subject, sup), data, jetstream.WithMsgID(commit.String()+"-0"),
			jetstream.WithStallWait(time.Minute)); err != nil {
			return i, fmt.Errorf("publish: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return i, err
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return i, ctx.Err()
	}
	return i, nil
}

// timeEncode runs tidemark encode until model has want live vectors, then stops it with
// SIGTERM; it returns the seconds from start to the last vector and the peak RSS. It watches
// the consumer's acks (an encoder acks after its commit), not the table: counting a million
// vectors every 50 ms would take a core from the encoders it measures. The count is checked
// once the stream is acked.
type encodeRun struct {
	secs float64
	rss  int64
	cpu  []cpuLine // with measure
}

func timeEncode(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, stream, consumer, bin string, args []string, model string, want int) (float64, int64, error) {
	r, err := runEncode(ctx, pool, js, stream, consumer, bin, args, model, want, false)
	return r.secs, r.rss, err
}

// runEncode is timeEncode; with measure it also meters the CPU of every process meanwhile.
func runEncode(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, stream, consumer, bin string, args []string, model string, want int, measure bool) (encodeRun, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	info, err := js.Stream(ctx, stream)
	if err != nil {
		return encodeRun{}, err
	}
	// The want-th message: the encoders have acked it and all before it.
	last := info.CachedInfo().State.FirstSeq + uint64(want) - 1
	var meter *cpuMeter
	if measure {
		if meter, err = startCPUMeter(ctx, pool); err != nil {
			return encodeRun{}, err
		}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return encodeRun{}, err
	}
	if meter != nil {
		meter.watch("tidemark encode", cmd.Process.Pid)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	fail := func(err error) (encodeRun, error) {
		_ = cmd.Process.Kill()
		<-done
		return encodeRun{}, err
	}
	var secs float64
	for {
		if c, err := js.Consumer(ctx, stream, consumer); err == nil {
			ci := c.CachedInfo()
			if ci.AckFloor.Stream >= last {
				var n int
				if err := pool.QueryRow(ctx, "SELECT count(*) FROM product_embeddings WHERE model = $1 AND NOT deleted", model).Scan(&n); err != nil {
					return fail(err)
				}
				if n >= want {
					secs = time.Since(start).Seconds()
					break
				}
			}
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fail(err)
		}
		select {
		case err := <-done:
			return encodeRun{}, fmt.Errorf("encode exited early (%v):\n%s", err, tail(out.String(), 2000))
		case <-time.After(50 * time.Millisecond):
		}
	}
	run := encodeRun{secs: secs}
	if meter != nil {
		run.cpu = meter.finish(ctx)
	}
	// The peak so far, read while it runs (see runProcess for why not rusage's maxrss).
	run.rss = vmHWM(cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		return encodeRun{}, fmt.Errorf("encode after SIGTERM: %w\n%s", err, tail(out.String(), 2000))
	}
	if os.Getenv("BENCH_ENCODE_LOG") != "" {
		fmt.Fprintln(os.Stderr, out.String())
	}
	return run, nil
}
