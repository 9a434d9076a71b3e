package main

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidemark/tidemark/catalog"
)

// MigrateCmd is `tidemark migrate`.
type MigrateCmd struct {
	Vectors string `default:"" enum:",auto,pgvector,array" help:"Vector storage: pgvector (indexable; needs the extension on the server), array (real[], every search scans) or auto (keep the table's; a new one gets pgvector when available). Default: the tidemark.vectors setting of the database, else auto."`
}

// Run applies pending migrations; a second run is a no-op.
func (c *MigrateCmd) Run(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	opts := []catalog.Option{catalog.WithLogger(log)}
	if c.Vectors != "" {
		opts = append(opts, catalog.WithVectors(catalog.Vectors(c.Vectors)))
	}
	applied, err := catalog.Migrate(ctx, pool, opts...)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		log.Info("schema is up to date")
	}
	for _, v := range applied {
		log.Info("applied migration", "version", v)
	}
	if l, err := catalog.ReadVectorLayout(ctx, pool); err == nil {
		log.Info("vectors", "column", l.Column, "pgvector_available", l.Available)
	}
	return nil
}
