package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/internal/sandbox"
)

// Env is what a stage gets: the servers, the built tidemark binary, and a scratch directory.
type Env struct {
	PG   *sandbox.Postgres
	NATS *sandbox.NATS
	Bin  string // path of the tidemark binary
	Rows int    // rows per stage (BENCH_ROWS)
	Dir  string // scratch directory, removed at the end
	Log  *slog.Logger
}

// Result is one row of the results table.
type Result struct {
	Stage           string  `json:"stage"`
	Rows            int     `json:"rows"`
	Seconds         float64 `json:"seconds"`
	Rate            float64 `json:"rate"` // rows (or changes, texts) per second
	Baseline        string  `json:"baseline,omitempty"`
	BaselineSeconds float64 `json:"baseline_seconds,omitempty"`
	Ratio           float64 `json:"ratio,omitempty"` // Seconds / BaselineSeconds
	PeakRSSMB       float64 `json:"peak_rss_mb,omitempty"`
	CPUSeconds      float64 `json:"cpu_seconds,omitempty"` // the server's CPU time, where measured
	Note            string  `json:"note,omitempty"`
	// CPU is what each process spent while the stage was timed; EncoderCPU splits the
	// encoders' share by what they were doing (from their CPU profile).
	CPU        []cpuLine `json:"cpu,omitempty"`
	EncoderCPU []cpuLine `json:"encoder_cpu,omitempty"`
}

// Stage is one benchmark.
type Stage struct {
	Name string
	// Suppliers is how many suppliers (ids 1 to Suppliers) the stage's database holds.
	Suppliers int32
	// Postgres, when set, is the settings of a server of the stage's own; otherwise its
	// database is on env.PG.
	Postgres *sandbox.PostgresOptions
	// Migrate are the options its database is migrated with.
	Migrate []catalog.Option
	Run     func(ctx context.Context, env *Env, db *Database) ([]Result, error)
}

// Database is a stage's database, bench_<stage>: made and migrated before the stage runs, its
// pool closed (and its own server, if it has one, stopped) after.
type Database struct {
	PG   *sandbox.Postgres
	URL  string
	Pool *pgxpool.Pool
}

// stages are the benchmarks in the order they run; -stages picks some of them.
var stages = []Stage{
	{Name: "encode", Suppliers: encodeSuppliers, Run: benchEncode},
	{Name: "load", Suppliers: benchSupplier, Run: benchLoad},
	{Name: "pipeline", Suppliers: benchSupplier, Run: benchPipeline},
	{Name: "replicate", Suppliers: 1, Run: benchReplicate},
	{Name: "resync", Suppliers: resyncSuppliers, Run: benchResync},
	{Name: "search", Suppliers: searchSuppliers, Run: benchSearch,
		Postgres: &sandbox.PostgresOptions{Settings: SearchSettings},
		Migrate:  []catalog.Option{catalog.WithVectors(catalog.VectorsPgvector)}},
	{Name: "snapshot", Suppliers: 1, Run: benchSnapshot},
}

// run makes the stage's database, runs the stage, and closes the database.
func (s Stage) run(ctx context.Context, env *Env) ([]Result, error) {
	pg := env.PG
	if s.Postgres != nil {
		own, err := sandbox.StartPostgres(ctx, *s.Postgres)
		if err != nil {
			return nil, err
		}
		defer own.Close()
		pg = own
	}
	db, err := newDatabase(ctx, pg, "bench_"+s.Name, s.Suppliers, s.Migrate...)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	defer db.Pool.Close()
	return s.Run(ctx, env, db)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	rows := 1_000_000
	if v := os.Getenv("BENCH_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("BENCH_ROWS=%q: want a positive integer", v)
		}
		rows = n
	}
	flag.IntVar(&rows, "rows", rows, "rows per stage (default $BENCH_ROWS or 1,000,000)")
	only := flag.String("stages", "", "comma-separated stages to run (default all)")
	out := flag.String("out", "bench/out/results.json", "where to write the results")
	bin := flag.String("bin", "bin/tidemark", "the tidemark binary to measure")
	stageTimeout := flag.Duration("stage-timeout", 10*time.Minute, "give up on a stage after this long")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	absBin, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(absBin); err != nil {
		return fmt.Errorf("tidemark binary: %w (run make build first)", err)
	}
	dir, err := os.MkdirTemp("", "tidemark-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The postgres OS user (when we are root) must read the files we hand to COPY via psql.
	_ = os.Chmod(dir, 0o755)

	pg, err := sandbox.StartPostgres(ctx, sandbox.PostgresOptions{})
	if err != nil {
		return err
	}
	defer pg.Close()
	nc, err := sandbox.StartNATS(sandbox.NATSOptions{})
	if err != nil {
		return err
	}
	defer nc.Close()
	env := &Env{PG: pg, NATS: nc, Bin: absBin, Rows: rows, Dir: dir, Log: log}

	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	var results []Result
	for _, s := range stages {
		if len(want) > 0 && !want[s.Name] {
			continue
		}
		log.Info("stage", "name", s.Name, "rows", rows)
		// A stage that hangs (a subprocess that never reaches its stop LSN, say) fails
		// loudly instead of holding the run past its budget.
		sctx, cancel := context.WithTimeout(ctx, *stageTimeout)
		rs, err := s.run(sctx, env)
		cancel()
		if err != nil {
			printTable(os.Stdout, results) // what the finished stages measured
			return fmt.Errorf("stage %s: %w", s.Name, err)
		}
		results = append(results, rs...)
	}
	printTable(os.Stdout, results)
	fmt.Println("rows:", benchData)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	host, _ := os.Hostname()
	doc := map[string]any{
		"date":    time.Now().UTC().Format(time.RFC3339),
		"machine": fmt.Sprintf("%s %s/%s, %d CPUs", host, runtime.GOOS, runtime.GOARCH, runtime.NumCPU()),
		"rows":    rows,
		"data":    benchData,
		"results": results,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(*out, append(b, '\n'), 0o644)
}

func printTable(w *os.File, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\trows\tseconds\trate/s\tbaseline\tbaseline s\tratio\tpeak RSS MB\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t\n", r.Stage, r.Rows, r.Seconds, r.Rate,
			r.Baseline, optional(r.BaselineSeconds, "%.2f"), optional(r.Ratio, "%.2f×"), optional(r.PeakRSSMB, "%.0f"))
	}
	tw.Flush()
	for _, r := range results {
		if r.Note != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Stage, r.Note)
		}
		if len(r.CPU) > 0 {
			fmt.Fprintf(w, "%s: %s\n", r.Stage, formatCPU(r.CPU, r.Rows))
		}
		if len(r.EncoderCPU) > 0 {
			fmt.Fprintf(w, "%s: encoder %s\n", r.Stage, formatCPU(r.EncoderCPU, r.Rows))
		}
	}
}

func optional(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// Process is a finished subprocess run: its wall time and peak resident memory.
type Process struct {
	Elapsed time.Duration
	PeakRSS int64         // bytes
	CPU     time.Duration // user + system time
	Output  string
}

// runProcess runs a command to completion and reports wall time and peak RSS (from rusage).
func runProcess(ctx context.Context, name string, args ...string) (Process, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Start()
	var peak atomic.Int64
	if err == nil {
		// Not rusage's maxrss: it counts the forking parent's memory from before exec (Go
		// forks with the parent's address space), so a large bench process would show as
		// every child's peak. The child's own high-water mark is sampled instead.
		done := make(chan struct{})
		go func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				if hwm := vmHWM(cmd.Process.Pid); hwm > peak.Load() {
					peak.Store(hwm)
				}
				select {
				case <-done:
					return
				case <-tick.C:
				}
			}
		}()
		err = cmd.Wait()
		close(done)
	}
	p := Process{Elapsed: time.Since(start), Output: out.String(), PeakRSS: peak.Load()}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if err != nil {
		return p, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(p.Output, 2000))
	}
	return p, nil
}

// vmHWM is process pid's peak resident set size in bytes, 0 once it has exited.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// database creates database name, migrated, with suppliers 1..suppliers and their partitions,
// and returns its URL and a pool the caller closes.
// jetStream connects to the benchmark's NATS server; closeJS closes the connection.
func (e *Env) jetStream(opts ...jetstream.JetStreamOpt) (js jetstream.JetStream, closeJS func(), err error) {
	nc, err := nats.Connect(e.NATS.URL())
	if err != nil {
		return nil, nil, err
	}
	if js, err = jetstream.New(nc, opts...); err != nil {
		nc.Close()
		return nil, nil, err
	}
	return js, nc.Close, nil
}

// emptyStream is jetStream with the change stream deleted, for a stage whose replicate starts
// it afresh.
func (e *Env) emptyStream(ctx context.Context) (js jetstream.JetStream, closeJS func(), err error) {
	if js, closeJS, err = e.jetStream(); err != nil {
		return nil, nil, err
	}
	_ = js.DeleteStream(ctx, event.Stream)
	return js, closeJS, nil
}

// psql is the psql client: the system's, else the one beside the sandbox's server.
func (e *Env) psql() string {
	if _, err := os.Stat("/usr/bin/psql"); err == nil {
		return "/usr/bin/psql"
	}
	return filepath.Join(e.PG.BinDir(), "psql")
}

// withAppName returns the connection URL with application_name set, so the meter can tell
// each command's PostgreSQL backends apart.
func withAppName(pgURL, name string) string {
	u, err := url.Parse(pgURL)
	if err != nil {
		return pgURL
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx reads '+' literally
	return u.String()
}

// newDatabase creates database name on pg, migrates it with opts and adds suppliers 1 to
// suppliers.
func newDatabase(ctx context.Context, pg *sandbox.Postgres, name string, suppliers int32, opts ...catalog.Option) (*Database, error) {
	url, err := pg.CreateDatabase(ctx, name)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	if _, err := catalog.Migrate(ctx, pool, opts...); err != nil {
		pool.Close()
		return nil, err
	}
	for id := int32(1); id <= suppliers; id++ {
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return catalog.AddSupplier(ctx, tx, id, "bench") }); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return &Database{PG: pg, URL: url, Pool: pool}, nil
}

// share is supplier id's part of n rows spread over suppliers: the first takes the remainder.
func share(n int, suppliers, id int32) int {
	per := n / int(suppliers)
	if id == 1 {
		per += n % int(suppliers)
	}
	return per
}
