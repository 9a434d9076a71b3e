package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"

	"github.com/tidemark/tidemark/encoder"
)

// SearchCmd is `tidemark search`.
type SearchCmd struct {
	EmbedderFlags `embed:""`

	Query    string `arg:"" help:"Text to search for."`
	Supplier int32  `help:"Only products of this supplier."`
	K        int    `short:"k" default:"10" help:"Number of results."`
	JSON     bool   `name:"json" help:"Print a JSON array (best first) on stdout."`
	Model    string `help:"Model whose vectors to search (default: the embedder's model)."`
}

// Run embeds the query and prints the nearest live products.
func (c *SearchCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	emb, err := c.EmbedderFlags.New(log)
	if err != nil {
		return err
	}
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := encoder.OpenStore(ctx, pool)
	if err != nil {
		return err
	}
	vecs, err := emb.Embed(ctx, []string{c.Query})
	if err != nil {
		return fmt.Errorf("embed query: %w", err)
	}
	model := c.Model
	if model == "" {
		model = emb.Model()
	}
	hits, err := store.Search(ctx, model, vecs[0], c.Supplier, c.K)
	if err != nil {
		return err
	}
	if c.JSON {
		if hits == nil {
			hits = []encoder.Hit{}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(hits)
	}
	if len(hits) == 0 {
		fmt.Fprintf(os.Stderr, "no vectors of model %s yet (is tidemark encode running?)\n", model)
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCORE\tSUPPLIER\tPRODUCT\tSKU\tNAME")
	for _, h := range hits {
		fmt.Fprintf(tw, "%.4f\t%d\t%d\t%s\t%s\n", h.Score, h.SupplierID, h.ProductID, h.SKU, h.Name)
	}
	return tw.Flush()
}
