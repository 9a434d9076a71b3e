package main

import (
	"context"
	"log/slog"

	"github.com/tidemark/tidemark/catalog"
)

// MigrateCmd is `tidemark migrate`.
type MigrateCmd struct{}

// Run applies pending migrations; a second run is a no-op.
func (c *MigrateCmd) Run(ctx context.Context, g *Globals, log *slog.Logger) error {
	pool, err := g.Pool(ctx, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := catalog.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		log.Info("schema is up to date")
		return nil
	}
	for _, v := range applied {
		log.Info("applied migration", "version", v)
	}
	return nil
}
