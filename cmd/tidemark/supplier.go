package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/catalog"
	"github.com/tidemark/tidemark/loader"
)

// SupplierCmd is `tidemark supplier`.
type SupplierCmd struct {
	Add     SupplierAddCmd     `cmd:"" help:"Add (or rename) a supplier and create its partition; idempotent."`
	List    SupplierListCmd    `cmd:"" help:"List suppliers with their partitions and product counts."`
	Profile SupplierProfileCmd `cmd:"" help:"Set, show or clear the drop profile a supplier's loads are read with."`
}

// SupplierAddCmd is `tidemark supplier add ID [--name NAME]`.
type SupplierAddCmd struct {
	ID   int32  `arg:"" help:"Supplier id (a positive integer)."`
	Name string `help:"Supplier name."`
}

// Run upserts the supplier and its partition in one transaction.
func (c *SupplierAddCmd) Run(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
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
func (c *SupplierListCmd) Run(ctx context.Context, pool *pgxpool.Pool) error {
	var list []catalog.Supplier
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
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

// SupplierProfileCmd is `tidemark supplier profile`.
type SupplierProfileCmd struct {
	Set   SupplierProfileSetCmd   `cmd:"" help:"Store a supplier's drop profile (YAML), checked first; its loads then need no flags."`
	Show  SupplierProfileShowCmd  `cmd:"" help:"Print a supplier's drop profile as it was set."`
	Clear SupplierProfileClearCmd `cmd:"" help:"Remove a supplier's drop profile: its drops are read as tidemark's own again."`
}

// SupplierProfileSetCmd is `tidemark supplier profile set ID FILE`.
type SupplierProfileSetCmd struct {
	ID   int32  `arg:"" help:"Supplier id."`
	File string `arg:"" help:"The drop profile, a YAML file, or - for standard input (such as tidemark load --detect's output)."`
}

// Run checks the profile and stores it as written.
func (c *SupplierProfileSetCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	text, err := readSmallFile(c.File)
	if err != nil {
		return err
	}
	if _, err := loader.ParseProfile(strings.NewReader(text)); err != nil {
		return fmt.Errorf("%s: %w", c.File, err)
	}
	if err := setDropProfile(ctx, g, log, c.ID, text); err != nil {
		return err
	}
	log.Info("drop profile set", "supplier", c.ID)
	return nil
}

// SupplierProfileShowCmd is `tidemark supplier profile show ID`.
type SupplierProfileShowCmd struct {
	ID int32 `arg:"" help:"Supplier id."`
}

// Run prints the stored profile; exit 1 when there is none.
func (c *SupplierProfileShowCmd) Run(ctx context.Context, pool *pgxpool.Pool) error {
	text, ok, err := catalog.DropProfile(ctx, pool, c.ID)
	if err != nil {
		return err
	}
	if !ok {
		return exitCode{1, fmt.Sprintf("supplier %d has no drop profile: its drops are read as tidemark's own CSV or NDJSON", c.ID)}
	}
	_, err = io.WriteString(os.Stdout, text)
	return err
}

// SupplierProfileClearCmd is `tidemark supplier profile clear ID`.
type SupplierProfileClearCmd struct {
	ID int32 `arg:"" help:"Supplier id."`
}

// Run removes the stored profile.
func (c *SupplierProfileClearCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	if err := setDropProfile(ctx, g, log, c.ID, ""); err != nil {
		return err
	}
	log.Info("drop profile cleared", "supplier", c.ID)
	return nil
}

func setDropProfile(ctx context.Context, g *Globals, log *slog.Logger, id int32, text string) error {
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return catalog.SetDropProfile(ctx, tx, id, text)
	})
}
