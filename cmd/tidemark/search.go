package main

import (
	"context"
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
	Exact    bool   `help:"Read every vector instead of the ANN index (slow; for checking the index)."`
	Probes   int    `help:"Lists of each partition's index to read (default: a quarter of them, half for --supplier); more finds more of the true nearest, slower."`
	JSON     bool   `name:"json" help:"Print a JSON object on stdout: model, method (index, scan or exact), the partitions searched through an index and read whole, and the hits (best first)."`
	Model    string `help:"Model whose vectors to search (default: the embedder's model)."`
}

// Run embeds the query and prints the nearest live products.
func (c *SearchCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	emb, store, closeStore, err := c.EmbedderFlags.openStore(ctx, g, log)
	if err != nil {
		return err
	}
	defer closeStore()
	vecs, err := emb.Embed(ctx, []string{c.Query})
	if err != nil {
		return fmt.Errorf("embed query: %w", err)
	}
	model := c.Model
	if model == "" {
		model = emb.Model()
	}
	res, err := store.SearchWith(ctx, model, vecs[0], encoder.SearchOptions{Supplier: c.Supplier, K: c.K, Exact: c.Exact, Probes: c.Probes})
	if err != nil {
		return err
	}
	if res.Method == encoder.MethodScan && store.Vector() {
		log.Warn("no ANN index for this model yet: the search read every vector (tidemark index builds it)", "model", model)
	}
	if c.JSON {
		return printJSON(os.Stdout, res)
	}
	if len(res.Hits) == 0 {
		fmt.Fprintf(os.Stderr, "no vectors of model %s yet (is tidemark encode running?)\n", model)
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCORE\tSUPPLIER\tPRODUCT\tSKU\tNAME")
	for _, h := range res.Hits {
		fmt.Fprintf(tw, "%.4f\t%d\t%d\t%s\t%s\n", h.Score, h.SupplierID, h.ProductID, h.SKU, h.Name)
	}
	return tw.Flush()
}
