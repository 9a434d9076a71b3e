package main

// The drops the demo loads and the changes it makes while the pipeline runs.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tidemark/tidemark/internal/fakedrop"
	"github.com/tidemark/tidemark/loader"
)

// demoDrops are the demo's suppliers and the file each sends: between them, every format the
// loader reads.
var demoDrops = []struct {
	supplier fakedrop.Supplier
	file     string
}{
	{fakedrop.Suppliers[0], "s1-northwind.csv"},
	{fakedrop.Suppliers[1], "s2-copperpot.ndjson.gz"},
	{fakedrop.Suppliers[2], "s3-voltline.csv.gz"},
}

// demoSeed seeds the generated catalogues: every demo loads the same products.
const demoSeed = 1

type loadReport struct {
	supplier fakedrop.Supplier
	file     string
	res      loader.Result
}

func (d *demo) load(ctx context.Context, s fakedrop.Supplier, file string, full bool) (loader.Result, error) {
	f, err := os.Open(file)
	if err != nil {
		return loader.Result{}, fmt.Errorf("open drop: %w", err)
	}
	defer f.Close()
	format, _ := loader.FormatOf(file)
	rd, err := loader.Open(bufio.NewReader(f), format)
	if err != nil {
		return loader.Result{}, fmt.Errorf("%s: %w", file, err)
	}
	// The generated drops are valid: a reject is a bug, so none are allowed.
	res, err := loader.Load(ctx, d.pool, rd, loader.Options{Supplier: s.ID, Full: full, MaxRejects: 0, Log: d.log})
	if err != nil {
		return res, fmt.Errorf("load %s: %w", filepath.Base(file), err)
	}
	d.log.Info("loaded drop", "supplier", s.ID, "file", filepath.Base(file), "inserted", res.Inserted,
		"updated", res.Updated, "unchanged", res.Unchanged, "deleted", res.Deleted, "rows_per_second", int64(res.RowsPerSecond))
	return res, nil
}

// changeRound changes the catalogue the two ways it changes in life: a supplier sends a new
// whole catalogue (some products renamed, some repriced, some gone; the loader writes only what
// changed), and the application updates and deletes rows directly.
func (d *demo) changeRound(ctx context.Context) error {
	s := demoDrops[0].supplier
	n := d.sizes[0]
	gone := max(1, n/50) // the oldest products are discontinued
	next := func(yield func(fakedrop.Product) bool) {
		i := 0
		// 6%: a new price, name or description.
		for p := range fakedrop.New(s, demoSeed).Reload(n, 6) {
			i++
			if i > gone && !yield(p) {
				return
			}
		}
	}
	file := filepath.Join(d.work, "s1-northwind-full.csv")
	if err := fakedrop.WriteFile(file, next); err != nil {
		return err
	}
	res, err := d.load(ctx, s, file, true)
	if err != nil {
		return err
	}
	d.deleted += res.Deleted
	d.changes = append(d.changes, fmt.Sprintf("supplier %d sends a new full catalogue (tidemark load --full): %d updated (new prices, names and descriptions), %d deleted, %d unchanged",
		s.ID, res.Updated, res.Deleted, res.Unchanged))

	tag, err := d.pool.Exec(ctx, `UPDATE products SET price = round(price * 0.9, 2), updated_at = now()
		WHERE supplier_id = $1 AND id % 20 = 0`, demoDrops[1].supplier.ID)
	if err != nil {
		return fmt.Errorf("price update: %w", err)
	}
	d.changes = append(d.changes, fmt.Sprintf("supplier %d puts %s on sale (UPDATE of the price only)", demoDrops[1].supplier.ID, plural(tag.RowsAffected(), "product")))
	tag, err = d.pool.Exec(ctx, `DELETE FROM products WHERE supplier_id = $1 AND id % 25 = 0`, demoDrops[2].supplier.ID)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	d.deleted += tag.RowsAffected()
	d.changes = append(d.changes, fmt.Sprintf("supplier %d withdraws %s (DELETE)", demoDrops[2].supplier.ID, plural(tag.RowsAffected(), "product")))
	d.log.Info("changed products", "changes", strings.Join(d.changes, "; "))
	return nil
}
