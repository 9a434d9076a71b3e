package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/tidemark/tidemark/replication"
	"github.com/tidemark/tidemark/sink"
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
}

// Run prints the checkpoint.
func (c *CheckpointShowCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	s, err := replication.ReadSlot(ctx, pool, c.Slot)
	if err != nil {
		return err
	}
	rep := checkpointReport{
		Slot: s.Name, Active: s.Active, ActivePID: s.ActivePID,
		ConfirmedLSN: s.ConfirmedLSN.String(), CurrentLSN: s.CurrentLSN.String(), LagBytes: s.LagBytes(),
	}
	if saved, err := loadSaved(ctx, g, log, c.Slot); err != nil {
		rep.SavedError = err.Error()
	} else if saved != 0 {
		rep.SavedLSN = saved.String()
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	saved := rep.SavedLSN
	if saved == "" {
		saved = "none"
		if rep.SavedError != "" {
			saved = "unknown (" + rep.SavedError + ")"
		}
	}
	state := "stopped"
	if rep.Active {
		state = fmt.Sprintf("active (PID %d)", rep.ActivePID)
	}
	fmt.Printf("slot:          %s, %s\nconfirmed LSN: %s\nsaved LSN:     %s\ncurrent LSN:   %s\nlag:           %d bytes\n",
		rep.Slot, state, rep.ConfirmedLSN, saved, rep.CurrentLSN, rep.LagBytes)
	return nil
}

func loadSaved(ctx context.Context, g *Globals, log *slog.Logger, slot string, extra ...nats.Option) (pglogrepl.LSN, error) {
	nc, err := g.NATSConn(log, "checkpoint", extra...)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cps, err := sink.OpenCheckpoints(cctx, js)
	if err != nil {
		return 0, err
	}
	return cps.Load(cctx, slot)
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
	nc, err := g.NATSConn(log, "checkpoint")
	if err != nil {
		return fmt.Errorf("slot moved to %s, but the saved checkpoint was not updated: %w", end, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cps, err := sink.OpenCheckpoints(cctx, js)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		cps, err = sink.EnsureCheckpoints(cctx, js, 0)
	}
	if err != nil {
		return fmt.Errorf("slot moved to %s, but the saved checkpoint was not updated: %w", end, err)
	}
	if err := cps.Save(cctx, c.Slot, end); err != nil {
		return fmt.Errorf("slot moved to %s, but the saved checkpoint was not updated: %w", end, err)
	}
	log.Info("checkpoint set", "slot", c.Slot, "lsn", end)
	fmt.Fprintf(os.Stderr, "slot %s confirmed at %s\n", c.Slot, end)
	return nil
}
