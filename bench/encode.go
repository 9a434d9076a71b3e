package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
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

func init() { register(Stage{Name: "encode", Run: benchEncode}) }

// The encode stage measures the hash embedder alone (texts/s on one core) and the encoders
// end to end: N insert events already in a stream → `tidemark encode --workers 2` → N live
// vectors. Its baseline is the per-row worker the encoders replace: one event per fetch, one
// embedding, one INSERT and one ack at a time (`--batch 1 --workers 1`), timed on a sample
// and scaled to N.
func benchEncode(ctx context.Context, env *Env) ([]Result, error) {
	n := env.Rows
	hashRes, err := benchHashEmbedder(ctx, n)
	if err != nil {
		return nil, err
	}
	// Every trade of the generator, one supplier each.
	suppliers := int32(len(fakedrop.Suppliers))
	url, pool, err := env.database(ctx, "bench_encode", suppliers)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	for id := int32(1); id <= suppliers; id++ {
		per := n / int(suppliers)
		if id == 1 {
			per += n % int(suppliers)
		}
		if _, err := copyProducts(ctx, pool, id, benchDrop(id).Products(per)); err != nil {
			return nil, fmt.Errorf("insert products: %w", err)
		}
	}

	js, closeJS, err := env.jetStream(jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	defer closeJS()
	const stream = "BENCH_ENCODE"
	_ = js.DeleteStream(ctx, stream)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"bench_encode.>"},
		Storage: jetstream.FileStorage, Duplicates: time.Minute}); err != nil {
		return nil, fmt.Errorf("create stream: %w", err)
	}
	env.Log.Info("encode: publishing insert events", "events", n)
	if err := publishInserts(ctx, pool, js, stream); err != nil {
		return nil, err
	}

	args := []string{"encode", "--pg-url", url, "--nats-url", env.NATS.URL(), "--stream", stream, "--http-addr", "",
		"--log-level", "warn"}
	if lv := os.Getenv("BENCH_ENCODE_LOG"); lv != "" {
		args = append(args, "--log-level", lv)
	}
	// BENCH_ENCODE_CPUPROFILE=file profiles the encoders' run.
	profile := []string{}
	if p := os.Getenv("BENCH_ENCODE_CPUPROFILE"); p != "" {
		profile = []string{"--cpuprofile", p}
	}
	model, _ := encoder.NewHash(encoder.DefaultDim)
	secs, rss, err := timeEncode(ctx, pool, js, stream, "bench", env.Bin, append(append(args, profile...), "--workers", "2", "--consumer", "bench"), model.Model(), n)
	if err != nil {
		return nil, err
	}
	// The per-row baseline on a sample (another model, so nothing is skipped as unchanged).
	sample := min(n, 5000)
	base, _ := encoder.NewHash(encoder.DefaultDim + 1)
	baseSecs, _, err := timeEncode(ctx, pool, js, stream, "baseline", env.Bin, append(args, "--workers", "1", "--batch", "1", "--consumer", "baseline",
		"--dim", fmt.Sprint(encoder.DefaultDim+1)), base.Model(), sample)
	if err != nil {
		return nil, err
	}
	baseScaled := baseSecs * float64(n) / float64(sample)
	e2e := Result{Stage: "encode", Rows: n, Seconds: secs, Rate: float64(n) / secs,
		Baseline: "per-row worker (batch 1)", BaselineSeconds: baseScaled, Ratio: secs / baseScaled, PeakRSSMB: float64(rss) / (1 << 20),
		Note: fmt.Sprintf("events in the stream → live vectors, 2 workers, hash embedder; baseline timed on %d rows and scaled", sample)}
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

// publishInserts publishes an insert event for every product, as replicate would.
func publishInserts(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, stream string) error {
	var base string
	if err := pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&base); err != nil {
		return err
	}
	lsn, err := event.ParseLSN(base)
	if err != nil {
		return err
	}
	rows, err := pool.Query(ctx, `SELECT supplier_id, id, sku, name, description, price::text, attributes::text FROM products`)
	if err != nil {
		return err
	}
	defer rows.Close()
	subject := strings.ToLower(stream)
	var (
		sup, id                int64
		sku, name, desc, price string
		attrs                  string
		i                      int
	)
	raw := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	for rows.Next() {
		if err := rows.Scan(&sup, &id, &sku, &name, &desc, &price, &attrs); err != nil {
			return err
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
			return err
		}
		// A loaded machine can leave the server's acks behind the window for long: wait for room
		// rather than fail (nats.go's default stall wait is 200 ms).
		if _, err := js.PublishAsync(fmt.Sprintf("%s.%d.insert", subject, sup), data, jetstream.WithMsgID(commit.String()+"-0"),
			jetstream.WithStallWait(time.Minute)); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// timeEncode runs tidemark encode until model has want live vectors, then stops it with
// SIGTERM; it returns the seconds from start to the last vector and the peak RSS. It watches
// the consumer's acks (an encoder acks after its commit), not the table: counting a million
// vectors every 50 ms would take a core from the encoders it measures. The count is checked
// once the stream is acked.
func timeEncode(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, stream, consumer, bin string, args []string, model string, want int) (float64, int64, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	info, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, 0, err
	}
	// The want-th message: the encoders have acked it and all before it.
	last := info.CachedInfo().State.FirstSeq + uint64(want) - 1
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	fail := func(err error) (float64, int64, error) {
		_ = cmd.Process.Kill()
		<-done
		return 0, 0, err
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
			return 0, 0, fmt.Errorf("encode exited early (%v):\n%s", err, tail(out.String(), 2000))
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The peak so far, read while it runs (see runProcess for why not rusage's maxrss).
	rss := vmHWM(cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		return 0, 0, fmt.Errorf("encode after SIGTERM: %w\n%s", err, tail(out.String(), 2000))
	}
	if os.Getenv("BENCH_ENCODE_LOG") != "" {
		fmt.Fprintln(os.Stderr, out.String())
	}
	return secs, rss, nil
}
