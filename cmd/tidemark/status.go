package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/health"
)

// StatusCmd is `tidemark status [--supplier ID] [--json]`.
type StatusCmd struct {
	Supplier int32         `env:"TIDEMARK_STATUS_SUPPLIER" help:"Show where this supplier stands, in detail (default: a table of every supplier)."`
	Slot     string        `default:"${slot}" help:"Replication slot (also the checkpoint key)."`
	Stream   string        `default:"${stream}" help:"JetStream stream."`
	Consumer string        `default:"${consumer}" help:"The encoders' durable consumer: what it has not applied yet is each supplier's stale vectors and oldest unembedded change."`
	Bucket   string        `default:"${bucket}" help:"Checkpoint KV bucket."`
	LagMax   int64         `default:"1073741824" help:"Unhealthy when the slot is inactive and retains more WAL than this many bytes."`
	Timeout  time.Duration `default:"30s" help:"Give up after this long."`
	JSON     bool          `help:"Print the status as JSON on stdout."`
}

// Run prints where the pipeline stands and exits non-zero, with the reasons, when it is not
// healthy: slot missing, lost, or inactive and lagging; stream missing; a server unreachable.
func (c *StatusCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	opts := health.Options{Slot: c.Slot, Stream: c.Stream, Bucket: c.Bucket, LagWarn: c.LagMax}
	st := health.NewStatus()
	if c.Supplier < 0 {
		return fmt.Errorf("--supplier %d: %w", c.Supplier, catalog.ErrBadSupplierID)
	}
	if pool, err := g.Pool(ctx, log); err != nil {
		st.Problem("postgres: %v", err)
	} else {
		health.GatherPostgres(ctx, pool, opts, st)
		err := health.GatherSuppliers(ctx, pool, c.Supplier, st)
		pool.Close()
		if errors.Is(err, health.ErrUnknownSupplier) {
			return exitCode{code: 1, msg: err.Error()}
		}
		if err != nil {
			st.Problem("%v", err)
		}
	}
	// Why the stale counts are unknown, when they are.
	var queueErr error
	if nc, err := g.NATSConn(log, "status"); err != nil {
		st.Problem("nats: %v", err)
		queueErr = err
	} else {
		if js, err := jetstream.New(nc); err != nil {
			st.Problem("jetstream: %v", err)
			queueErr = err
		} else {
			health.GatherNATS(ctx, js, opts, st)
			queueErr = health.GatherSupplierQueue(ctx, js, c.Stream, c.Consumer, st)
		}
		nc.Close()
	}
	st.CheckLost(c.Slot)
	var err error
	switch {
	case c.JSON:
		err = printJSON(os.Stdout, st)
	case c.Supplier != 0:
		err = printSupplierStatus(os.Stdout, st, c.Consumer, queueErr, time.Now())
	default:
		err = printStatus(os.Stdout, st, c.Consumer, queueErr, time.Now())
	}
	if err != nil {
		return err
	}
	if !st.Healthy {
		return exitCode{code: 1, msg: "unhealthy: " + strings.Join(st.Problems, "; ")}
	}
	return nil
}

func printStatus(w io.Writer, st *health.Status, consumer string, queueErr error, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	printPipeline(tw, st, now)
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := printSupplierTable(w, st.Suppliers, consumer, queueErr, now); err != nil {
		return err
	}
	return printHealth(w, st)
}

// printPipeline writes the lines of the pipeline as a whole: slot, checkpoint, stream,
// consumers and vectors.
func printPipeline(tw *tabwriter.Writer, st *health.Status, now time.Time) {
	if s := st.Slot; s != nil {
		state := "inactive"
		if s.Active {
			state = "active"
		}
		fmt.Fprintf(tw, "slot\t%s\t%s, confirmed %s, lag %s, wal_status %s\n", s.Name, state, s.ConfirmedLSN, health.FormatBytes(s.LagBytes), s.WALStatus)
	} else {
		fmt.Fprintf(tw, "slot\t-\tnone\n")
	}
	if cp := st.Checkpoint; cp != nil {
		fmt.Fprintf(tw, "checkpoint\t%s\t%s, saved %s ago (revision %d)\n", cp.Key, cp.LSN, now.Sub(cp.Saved).Round(time.Second), cp.Revision)
	} else {
		fmt.Fprintf(tw, "checkpoint\t-\tnone saved\n")
	}
	if s := st.Stream; s != nil {
		fmt.Fprintf(tw, "stream\t%s\t%d messages, %s, sequences %d..%d, %d replicas\n", s.Name, s.Messages, health.FormatBytes(int64(s.Bytes)), s.FirstSeq, s.LastSeq, s.Replicas)
	} else {
		fmt.Fprintf(tw, "stream\t-\tnone\n")
	}
	if len(st.Consumers) == 0 {
		fmt.Fprintf(tw, "consumers\t-\tnone\n")
	}
	for _, c := range st.Consumers {
		fmt.Fprintf(tw, "consumer\t%s\tpending %d, ack pending %d, redelivered %d, waiting pulls %d\n", c.Name, c.Pending, c.AckPending, c.Redelivered, c.Waiting)
	}
	if v := st.Vectors; v != nil {
		var models []string
		for _, m := range v.Models {
			line := fmt.Sprintf("%s: %d live, %d deleted", m.Model, m.Live, m.Deleted)
			if m.Index != nil {
				line += ", " + m.Index.Describe()
			}
			models = append(models, line)
		}
		fmt.Fprintf(tw, "vectors\t%d live, %d deleted\t%s\n", v.Live, v.Deleted, strings.Join(models, "; "))
	} else {
		fmt.Fprintf(tw, "vectors\t-\tno product_embeddings table\n")
	}
}

func printHealth(w io.Writer, st *health.Status) error {
	if st.Healthy {
		_, err := fmt.Fprintln(w, "healthy")
		return err
	}
	for _, p := range st.Problems {
		if _, err := fmt.Fprintln(w, "problem:", p); err != nil {
			return err
		}
	}
	return nil
}
