package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/snapshot"
)

// SnapshotCmd is `tidemark snapshot --supplier ID | --all`.
type SnapshotCmd struct {
	Supplier  []int32 `env:"TIDEMARK_SNAPSHOT_SUPPLIERS" help:"Supplier(s) to re-publish." xor:"which" required:""`
	All       bool    `help:"Every supplier." xor:"which" required:""`
	ChunkSize int     `default:"2000" help:"Rows per chunk (one low/high watermark pair each)."`
	NewEpoch  bool    `help:"Do not resume an interrupted snapshot of the supplier: read it again in a new epoch. For after changes were lost (a replication slot re-created), when the interrupted one began before."`
	JSON      bool    `help:"Print a JSON array of results on stdout."`
}

// Run snapshots the suppliers one after another, each as an epoch in the stream whose close
// lets subscribers drop what it did not carry; each resumes where an interrupted snapshot of
// the same supplier stopped, unless --new-epoch. A running replicator publishes the rows as it
// reaches them.
func (c *SnapshotCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	if c.ChunkSize <= 0 {
		return errors.New("--chunk-size must be positive")
	}
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	ids := c.Supplier
	if c.All {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			list, err := catalog.ListSuppliers(ctx, tx)
			for _, s := range list {
				ids = append(ids, s.ID)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	results := []snapshot.Result{}
	for _, id := range ids {
		bar := newProgressBar(fmt.Sprintf("supplier %d", id), 0, "rows")
		res, err := snapshot.Supplier(ctx, pool, id, snapshot.Options{
			ChunkSize: c.ChunkSize,
			Progress:  bar.Set,
			Log:       log,
			NewEpoch:  c.NewEpoch,
		})
		bar.Done(err == nil)
		if err != nil {
			return fmt.Errorf("snapshot supplier %d: %w", id, err)
		}
		log.Info("snapshot written to the WAL", "supplier", id, "snapshot", res.ID, "epoch", res.Epoch, "rows", res.Rows,
			"chunks", res.Chunks, "resumed", res.Resumed)
		results = append(results, res)
	}
	if c.JSON {
		return json.NewEncoder(os.Stdout).Encode(results)
	}
	return nil
}
