package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/encoder"
	"github.com/tidemark/tidemark/event"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// CLI is the command line: global flags and one field per sub-command.
type CLI struct {
	Globals

	Migrate    MigrateCmd    `cmd:"" help:"Apply the embedded schema migrations (idempotent)."`
	Supplier   SupplierCmd   `cmd:"" help:"Manage suppliers and their partitions."`
	Load       LoadCmd       `cmd:"" help:"Bulk-load a supplier drop (CSV, NDJSON or XLSX; CSV and NDJSON maybe gzipped)."`
	Replicate  ReplicateCmd  `cmd:"" help:"Tail the WAL and publish every product change to JetStream."`
	Tail       TailCmd       `cmd:"" help:"Print events from the ${stream} stream as they arrive."`
	Checkpoint CheckpointCmd `cmd:"" help:"Show or move the replication checkpoint."`
	Snapshot   SnapshotCmd   `cmd:"" help:"Re-publish current rows of one supplier (or all) while streaming goes on."`
	Encode     EncodeCmd     `cmd:"" help:"Consume product changes and keep embedding vectors fresh."`
	Search     SearchCmd     `cmd:"" help:"Nearest products to a text query."`
	Index      IndexCmd      `cmd:"" help:"Build the ANN index of a model's vectors on every supplier partition that needs one."`
	Status     StatusCmd     `cmd:"" help:"Where the pipeline stands: slot, stream, consumers, vectors."`
	Doctor     DoctorCmd     `cmd:"" help:"Check the database and NATS are set up right for the pipeline."`
	Demo       DemoCmd       `cmd:"" help:"Run the whole pipeline against throw-away servers."`
	Config     ConfigCmd     `cmd:"" help:"Inspect the effective configuration."`

	// env:"-": an image tag in TIDEMARK_VERSION must not turn every command into --version.
	Version kong.VersionFlag `env:"-" help:"Print the version and exit."`
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var cli CLI
	parser, err := newParser(&cli)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tidemark:", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tidemark:", err)
		return 2
	}
	log, err := cli.Globals.Logger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tidemark:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	kctx.Bind(log, &cli.Globals)
	// A command whose Run takes the pool gets it connected (--pg-url, …) and closed when Run
	// returns. The others open their own (Globals.Pool) where they need it: after checking
	// their input, or (doctor, status) to report a failed connection as a check.
	var pool *pgxpool.Pool
	defer func() {
		if pool != nil {
			pool.Close()
		}
	}()
	if err := kctx.BindSingletonProvider(func() (*pgxpool.Pool, error) {
		var err error
		pool, err = cli.Globals.Pool(ctx, log)
		return pool, err
	}); err != nil {
		fmt.Fprintln(os.Stderr, "tidemark:", err)
		return 2
	}
	if err := kctx.Run(); err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return 0 // stopped by a signal: a clean exit
		}
		var exit exitCode
		if errors.As(err, &exit) {
			if exit.msg != "" {
				fmt.Fprintln(os.Stderr, "tidemark:", exit.msg)
			}
			return exit.code
		}
		fmt.Fprintln(os.Stderr, "tidemark:", err)
		return 1
	}
	return 0
}

// newParser builds the kong parser: every flag also from TIDEMARK_<FLAG> and from the YAML file
// named by --config (see [config.File] for the precedence).
func newParser(cli *CLI) (*kong.Kong, error) {
	return kong.New(cli,
		kong.Name("tidemark"),
		kong.Description("Change-data-capture from PostgreSQL to NATS JetStream, with bulk loads and embeddings."),
		kong.UsageOnError(),
		kong.DefaultEnvars("TIDEMARK"),
		kong.Vars{"version": version},
		nameVars,
	)
}

// nameVars are the pipeline's names and the packages' defaults, for the flags' defaults and
// help (${stream}, …): each is defined once, in the package that owns it.
var nameVars = func() kong.Vars {
	enc := encoder.DefaultConfig()
	repl, pub, stream := replication.DefaultConfig(), sink.DefaultOptions(), sink.DefaultStreamConfig()
	return kong.Vars{
		"slot":        repl.Slot,
		"publication": repl.Publication,
		"stream":      event.Stream,
		"subjects":    event.SubjectPrefix + ".>",
		"bucket":      sink.CheckpointBucket,
		"consumer":    enc.Consumer,
		"dlq_stream":  enc.DLQ,

		"encode_workers":         strconv.Itoa(enc.Workers),
		"encode_batch":           strconv.Itoa(enc.Batch),
		"encode_batch_wait":      enc.BatchWait.String(),
		"encode_ack_wait":        enc.AckWait.String(),
		"encode_max_deliver":     strconv.Itoa(enc.MaxDeliver),
		"encode_max_ack_pending": strconv.Itoa(enc.MaxAckPending),

		"replicate_dedup_window":    flagDuration(stream.Duplicates),
		"replicate_replicas":        strconv.Itoa(stream.Replicas),
		"replicate_max_in_flight":   strconv.Itoa(pub.MaxInFlight),
		"replicate_ack_timeout":     flagDuration(pub.AckTimeout),
		"replicate_status_interval": flagDuration(repl.StatusInterval),
		"replicate_heartbeat":       flagDuration(repl.Heartbeat),
	}
}()

// flagDuration writes d as a flag's default is written by hand: 2m, not 2m0s.
func flagDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// exitCode is an error that asks for a specific exit status (doctor and status use it to
// report an unhealthy result without it being a failure of the command itself).
type exitCode struct {
	code int
	msg  string
}

func (e exitCode) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.msg) }
