package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/tidemark/tidemark/catalog"
)

// SupplierCmd is `tidemark supplier`.
type SupplierCmd struct {
	Add  SupplierAddCmd  `cmd:"" help:"Add (or rename) a supplier and create its partition; idempotent."`
	List SupplierListCmd `cmd:"" help:"List suppliers with their partitions and product counts."`
}

// SupplierAddCmd is `tidemark supplier add ID [--name NAME]`.
type SupplierAddCmd struct {
	ID   int32  `arg:"" help:"Supplier id (a positive integer)."`
	Name string `help:"Supplier name."`
}

// Run upserts the supplier and its partition in one transaction.
func (c *SupplierAddCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return catalog.AddSupplier(ctx, tx, c.ID, c.Name)
	})
	if err != nil {
		return err
	}
	log.Info("supplier ready", "id", c.ID, "partition", catalog.PartitionName(c.ID))
	return nil
}

// SupplierListCmd is `tidemark supplier list [--json]`.
type SupplierListCmd struct {
	JSON bool `help:"Print a JSON array on stdout."`
}

// Run prints the suppliers.
func (c *SupplierListCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	var list []catalog.Supplier
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		list, err = catalog.ListSuppliers(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	if c.JSON {
		if list == nil {
			list = []catalog.Supplier{}
		}
		return json.NewEncoder(os.Stdout).Encode(list)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tPARTITION\tPRODUCTS")
	for _, s := range list {
		fmt.Fprintf(w, "%d\t%s\t%s\t%d\n", s.ID, s.Name, s.Partition, s.Products)
	}
	return w.Flush()
}
