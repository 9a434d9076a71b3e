package catalog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
)

// Vectors is how product_embeddings stores its vectors.
type Vectors string

const (
	// VectorsAuto keeps the column as the schema has it: 0002 made it pgvector's vector when the
	// extension was available at the first migration, else real[].
	VectorsAuto Vectors = "auto"
	// VectorsPgvector stores pgvector's vector, which search can index. Migrating fails when the
	// extension is not installed on the server.
	VectorsPgvector Vectors = "pgvector"
	// VectorsArray stores real[]: no extension needed, and every search scans.
	VectorsArray Vectors = "array"
)

// VectorsSetting is the PostgreSQL setting a migration reads when no [WithVectors] option is
// given, so a database can carry its choice: ALTER DATABASE shop SET tidemark.vectors = 'array'.
const VectorsSetting = "tidemark.vectors"

// ParseVectors checks a layout name.
func ParseVectors(s string) (Vectors, error) {
	switch v := Vectors(s); v {
	case VectorsAuto, VectorsPgvector, VectorsArray:
		return v, nil
	}
	return "", fmt.Errorf("%w: %q", ErrBadVectors, s)
}

// Option tunes [Migrate].
type Option func(*options)

type options struct {
	vectors Vectors
	log     *slog.Logger
}

// WithVectors chooses the vector layout, overriding the tidemark.vectors setting.
func WithVectors(v Vectors) Option { return func(o *options) { o.vectors = v } }

// WithLogger logs what a layout change does (it can take a while on a large table).
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// VectorLayout is what product_embeddings stores and what the server could store.
type VectorLayout struct {
	Column    string // "vector" or "real[]"; "" without the table
	Available bool   // pgvector can be installed on the server
	Installed bool   // pgvector is installed in this database
}

// Pgvector reports whether the column is pgvector's vector.
func (l VectorLayout) Pgvector() bool { return l.Column == "vector" }

// ReadVectorLayout inspects the database.
func ReadVectorLayout(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (VectorLayout, error) {
	var l VectorLayout
	var col *string
	err := q.QueryRow(ctx, `SELECT
		(SELECT format_type(atttypid, NULL) FROM pg_attribute
			WHERE attrelid = to_regclass('product_embeddings') AND attname = 'embedding' AND NOT attisdropped),
		EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector'),
		EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')`).Scan(&col, &l.Available, &l.Installed)
	if err != nil {
		return l, fmt.Errorf("inspect the vector layout: %w", err)
	}
	if col != nil {
		l.Column = *col
	}
	return l, nil
}

// setVectors converts product_embeddings to the layout asked for (by option, else by the
// tidemark.vectors setting; auto changes nothing). The conversion rewrites the table under
// an exclusive lock: encoders and searches wait until it is done, so it is logged with the
// number of rows it moves. Converting to real[] drops the ANN indexes first (they index a
// pgvector expression).
func setVectors(ctx context.Context, conn *pgx.Conn, o options) error {
	want := o.vectors
	if want == "" {
		var s string
		if err := conn.QueryRow(ctx, "SELECT coalesce(current_setting($1, true), '')", VectorsSetting).Scan(&s); err != nil {
			return fmt.Errorf("read %s: %w", VectorsSetting, err)
		}
		if s == "" {
			return nil
		}
		v, err := ParseVectors(s)
		if err != nil {
			return fmt.Errorf("setting %s: %w", VectorsSetting, err)
		}
		want = v
	}
	l, err := ReadVectorLayout(ctx, conn)
	if err != nil {
		return err
	}
	if l.Column == "" || want == VectorsAuto {
		return nil
	}
	if want == VectorsPgvector && !l.Available {
		return ErrNoPgvector
	}
	if (want == VectorsPgvector) == l.Pgvector() {
		return nil
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "LOCK TABLE product_embeddings IN ACCESS EXCLUSIVE MODE"); err != nil {
			return fmt.Errorf("lock product_embeddings: %w", err)
		}
		var n int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM product_embeddings WHERE embedding IS NOT NULL").Scan(&n); err != nil {
			return fmt.Errorf("count vectors: %w", err)
		}
		if o.log != nil {
			o.log.Info("converting product_embeddings: encoders and searches wait until it is done",
				"from", l.Column, "to", want, "vectors", n)
		}
		if want == VectorsPgvector {
			if _, err := tx.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS vector"); err != nil {
				return fmt.Errorf("create extension vector: %w", err)
			}
			if _, err := tx.Exec(ctx, "ALTER TABLE product_embeddings ALTER COLUMN embedding TYPE vector USING embedding::vector"); err != nil {
				return fmt.Errorf("convert embeddings to vector: %w", err)
			}
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
			WHERE i.indexprs IS NOT NULL AND (i.indrelid = 'product_embeddings'::regclass
				OR i.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'product_embeddings'::regclass))`)
		if err != nil {
			return fmt.Errorf("list vector indexes: %w", err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("list vector indexes: %w", err)
		}
		for _, name := range names {
			if _, err := tx.Exec(ctx, "DROP INDEX "+pgx.Identifier{name}.Sanitize()); err != nil {
				return fmt.Errorf("drop index %s: %w", name, err)
			}
		}
		if _, err := tx.Exec(ctx, "ALTER TABLE product_embeddings ALTER COLUMN embedding TYPE real[] USING embedding::real[]"); err != nil {
			return fmt.Errorf("convert embeddings to real[]: %w", err)
		}
		return nil
	})
}
