package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
	"github.com/tidemark/tidemark/snapshot"
)

// CheckpointCmd is `tidemark checkpoint`: show or move the replication checkpoint.
type CheckpointCmd struct {
	Show CheckpointShowCmd `cmd:"" default:"withargs" help:"Show the slot's confirmed LSN, the saved checkpoint and the lag."`
	Set  CheckpointSetCmd  `cmd:"" help:"Move a stopped slot (and the saved checkpoint) forward to LSN."`
}

// CheckpointShowCmd is `tidemark checkpoint show`.
type CheckpointShowCmd struct {
	Slot string `default:"${slot}" help:"Logical replication slot."`
	JSON bool   `name:"json" help:"Print JSON on stdout."`
}

type checkpointReport struct {
	Slot         string `json:"slot"`
	Active       bool   `json:"active"`
	ActivePID    int32  `json:"active_pid,omitempty"`
	ConfirmedLSN string `json:"confirmed_lsn"`
	SavedLSN     string `json:"saved_lsn,omitempty"`
	CurrentLSN   string `json:"current_lsn"`
	LagBytes     int64  `json:"lag_bytes"`
	SavedError   string `json:"saved_error,omitempty"`
	// LostEpochs are the snapshot epochs replicate saved as having lost a chunk: their close
	// is never published, and their suppliers want a snapshot with --new-epoch, unless one
	// finished since (Resnapshot).
	LostEpochs      []lostEpochReport `json:"lost_epochs"`
	LostEpochsError string            `json:"lost_epochs_error,omitempty"`
}

type lostEpochReport struct {
	ID       string `json:"id"`
	Supplier int64  `json:"supplier,omitempty"`
	LostLSN  string `json:"lost_lsn"`
	// DroppedCloseLSN is where the epoch's close was dropped; empty while it has not come.
	DroppedCloseLSN string               `json:"dropped_close_lsn,omitempty"`
	Resnapshot      *snapshot.Resnapshot `json:"resnapshot,omitempty"`
	ResnapshotError string               `json:"resnapshot_error,omitempty"`
}

// Run prints the checkpoint.
func (c *CheckpointShowCmd) Run(ctx context.Context, g *Globals, log *slog.Logger, pool *pgxpool.Pool) error {
	s, err := replication.ReadSlot(ctx, pool, c.Slot)
	if err != nil {
		return err
	}
	rep := checkpointReport{
		Slot: s.Name, Active: s.Active, ActivePID: s.ActivePID,
		ConfirmedLSN: s.ConfirmedLSN.String(), CurrentLSN: s.CurrentLSN.String(), LagBytes: s.LagBytes(),
	}
	var lost []replication.LostEpoch
	err = withCheckpoints(ctx, g, log, bucketMustExist, func(ctx context.Context, cps *sink.Checkpoints) error {
		saved, err := cps.Load(ctx, c.Slot)
		if err != nil {
			return err
		}
		if saved != 0 {
			rep.SavedLSN = saved.String()
		}
		if lost, err = cps.LoadLostEpochs(ctx, c.Slot); err != nil {
			rep.LostEpochsError = err.Error()
		}
		return nil
	})
	if err != nil {
		rep.SavedError = err.Error()
	}
	rep.LostEpochs = lostEpochReports(ctx, pool, lost)
	if c.JSON {
		return printJSON(os.Stdout, rep)
	}
	savedText := rep.SavedLSN
	if savedText == "" {
		savedText = "none"
		if rep.SavedError != "" {
			savedText = "unknown (" + rep.SavedError + ")"
		}
	}
	state := "stopped"
	if rep.Active {
		state = fmt.Sprintf("active (PID %d)", rep.ActivePID)
	}
	fmt.Printf("slot:          %s, %s\nconfirmed LSN: %s\nsaved LSN:     %s\ncurrent LSN:   %s\nlag:           %d bytes\n",
		rep.Slot, state, rep.ConfirmedLSN, savedText, rep.CurrentLSN, rep.LagBytes)
	if rep.LostEpochsError != "" {
		fmt.Printf("lost epochs:   unknown (%s)\n", rep.LostEpochsError)
	}
	printLostEpochs(rep.LostEpochs)
	return nil
}

// lostEpochReports looks up, for each lost epoch, whether a snapshot of its supplier has
// finished since.
func lostEpochReports(ctx context.Context, pool *pgxpool.Pool, lost []replication.LostEpoch) []lostEpochReport {
	reports := make([]lostEpochReport, 0, len(lost))
	for _, e := range lost {
		r := lostEpochReport{ID: e.ID, Supplier: e.Supplier, LostLSN: e.Lost.String()}
		if e.Closed != 0 {
			r.DroppedCloseLSN = e.Closed.String()
		}
		if e.Supplier != 0 {
			switch re, ok, err := snapshot.FinishedSince(ctx, pool, e.Supplier, e.Lost); {
			case err != nil:
				r.ResnapshotError = err.Error()
			case ok:
				r.Resnapshot = &re
			}
		}
		reports = append(reports, r)
	}
	return reports
}

func printLostEpochs(lost []lostEpochReport) {
	if len(lost) == 0 {
		return
	}
	fmt.Printf("lost epochs:   %d snapshot epochs lost a chunk; their close is never published\n", len(lost))
	for _, e := range lost {
		supplier := "supplier unknown"
		if e.Supplier != 0 {
			supplier = fmt.Sprintf("supplier %d", e.Supplier)
		}
		closeText := "close not yet replicated"
		if e.DroppedCloseLSN != "" {
			closeText = "close dropped at " + e.DroppedCloseLSN
		}
		var fix string
		switch {
		case e.Resnapshot != nil:
			fix = fmt.Sprintf("snapshotted again since (epoch %s, finished %s)", e.Resnapshot.Epoch, e.Resnapshot.Finished.UTC().Format(time.RFC3339))
		case e.ResnapshotError != "":
			fix = "whether it was snapshotted again since is unknown: " + e.ResnapshotError
		case e.Supplier != 0:
			fix = fmt.Sprintf("run: tidemark snapshot --supplier %d --new-epoch", e.Supplier)
		default:
			fix = "snapshot the supplier replicate logged for it with --new-epoch"
		}
		fmt.Printf("  %s, epoch %s: chunk lost at %s, %s; %s\n", supplier, e.ID, e.LostLSN, closeText, fix)
	}
}

func loadSaved(ctx context.Context, g *Globals, log *slog.Logger, slot string, extra ...nats.Option) (pglogrepl.LSN, error) {
	var saved pglogrepl.LSN
	err := withCheckpoints(ctx, g, log, bucketMustExist, func(ctx context.Context, cps *sink.Checkpoints) error {
		var err error
		saved, err = cps.Load(ctx, slot)
		return err
	}, extra...)
	return saved, err
}

// bucketMode says what withCheckpoints does when the checkpoint bucket does not exist.
type bucketMode int

const (
	bucketMustExist bucketMode = iota // fail with jetstream.ErrBucketNotFound
	bucketCreate                      // create it (one replica), as replicate would
)

// withCheckpoints runs f with the checkpoint bucket, on a connection of its own, within 10s.
func withCheckpoints(ctx context.Context, g *Globals, log *slog.Logger, mode bucketMode, f func(context.Context, *sink.Checkpoints) error, extra ...nats.Option) error {
	nc, err := g.NATSConn(log, "checkpoint", extra...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cps, err := sink.OpenCheckpoints(ctx, js)
	if errors.Is(err, jetstream.ErrBucketNotFound) && mode == bucketCreate {
		cps, err = sink.EnsureCheckpoints(ctx, js, 0)
	}
	if err != nil {
		return err
	}
	return f(ctx, cps)
}

// CheckpointSetCmd is `tidemark checkpoint set LSN`.
type CheckpointSetCmd struct {
	LSN  string `arg:"" help:"The LSN to move to, e.g. 16/B374D848 (from checkpoint show or a saved note)."`
	Slot string `default:"${slot}" help:"Logical replication slot."`
}

// Run moves the slot forward and saves the checkpoint.
func (c *CheckpointSetCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	lsn, err := parseLSNFlag("lsn", c.LSN)
	if err != nil {
		return err
	}
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	end, err := replication.AdvanceSlot(ctx, pool, c.Slot, lsn)
	if err != nil {
		return err
	}
	err = withCheckpoints(ctx, g, log, bucketCreate, func(ctx context.Context, cps *sink.Checkpoints) error {
		return cps.Save(ctx, c.Slot, end)
	})
	if err != nil {
		return fmt.Errorf("slot moved to %s, but the saved checkpoint was not updated: %w", end, err)
	}
	log.Info("checkpoint set", "slot", c.Slot, "lsn", end)
	fmt.Fprintf(os.Stderr, "slot %s confirmed at %s\n", c.Slot, end)
	return nil
}
