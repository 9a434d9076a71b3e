package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/tidemark/tidemark/encoder"
)

// IndexCmd is `tidemark index`.
type IndexCmd struct {
	EmbedderFlags `embed:""`

	Model    string `help:"Model whose index to build (default: the embedder's model)."`
	Supplier int32  `help:"Only this supplier's partition (default: every partition that needs an index)."`
	Rebuild  bool   `help:"Build again even where a current index exists (new lists for the vectors there now)."`
	JSON     bool   `name:"json" help:"Print the model's index state as JSON on stdout when done."`
}

// Run builds the model's missing or outgrown ANN indexes, one partition at a time, with
// CREATE INDEX CONCURRENTLY: encoders and searches go on. Progress is logged on stderr.
func (c *IndexCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	emb, store, closeStore, err := c.EmbedderFlags.openStore(ctx, g, log)
	if err != nil {
		return err
	}
	defer closeStore()
	if !store.Vector() {
		return errors.New("product_embeddings stores real[], which cannot be indexed: install pgvector on the server, then tidemark migrate --vectors pgvector")
	}
	model, dim := c.Model, emb.Dim()
	if model == "" {
		model = emb.Model()
	}
	if dim == 0 || c.Model != "" {
		if dim, err = store.ModelDim(ctx, model); err != nil {
			return err
		}
	}
	mi, err := store.Index(ctx, model, dim, true)
	if err != nil {
		return err
	}
	built := 0
	for _, p := range mi.Partitions {
		if c.Supplier != 0 && p.Supplier != c.Supplier {
			continue
		}
		need := p.State == encoder.IndexMissing || p.State == encoder.IndexInvalid || p.Stale ||
			(c.Rebuild && p.State == encoder.IndexBuilt) || (c.Supplier != 0 && p.State == encoder.IndexSmall)
		if !need {
			log.Info("index", "supplier", p.Supplier, "state", p.State, "vectors", p.Vectors, "index", p.Name)
			continue
		}
		start := time.Now()
		log.Info("building index", "model", model, "supplier", p.Supplier, "vectors", p.Vectors)
		last := ""
		name, err := store.BuildIndex(ctx, model, dim, p.Supplier, c.Rebuild, func(phase string) {
			if phase != last {
				last = phase
				log.Info("building index", "supplier", p.Supplier, "phase", phase)
			}
		})
		if err != nil {
			return fmt.Errorf("supplier %d: %w", p.Supplier, err)
		}
		built++
		log.Info("index built", "supplier", p.Supplier, "index", name, "seconds", fmt.Sprintf("%.1f", time.Since(start).Seconds()))
	}
	if c.Supplier != 0 && len(mi.Partitions) > 0 && built == 0 {
		found := false
		for _, p := range mi.Partitions {
			found = found || p.Supplier == c.Supplier
		}
		if !found {
			return fmt.Errorf("supplier %d has no vectors of model %s", c.Supplier, model)
		}
	}
	if len(mi.Partitions) == 0 {
		return fmt.Errorf("no vectors of model %s yet (run tidemark encode first)", model)
	}
	if c.JSON {
		if mi, err = store.Index(ctx, model, dim, true); err != nil {
			return err
		}
		return printJSON(os.Stdout, mi)
	}
	log.Info("indexes are current", "model", model, "built", built)
	return nil
}
