-- Embedding vectors of the catalogue, kept fresh by `tidemark encode`: one row per product and
-- model. A row is written only by an event newer than the one that wrote it, compared by
-- (source_lsn, source_seq) — the commit LSN of the change's transaction and its position in it —
-- so a replayed older event never overwrites a newer one. A delete leaves a tombstone (deleted,
-- embedding NULL) so that a late or replayed insert cannot bring the product back.
--
-- The embedding column is pgvector's `vector` when the extension can be installed (so search
-- can use `<=>` and, later, an index), else real[]; tidemark works with either.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        CREATE EXTENSION IF NOT EXISTS vector;
    END IF;
END
$$;

CREATE TABLE product_embeddings (
    supplier_id  integer     NOT NULL,
    product_id   bigint      NOT NULL,
    model        text        NOT NULL,
    sku          varchar(100),
    name         text,
    dim          integer,
    embedding    real[],
    content_hash bytea,
    source_lsn   pg_lsn      NOT NULL,
    source_seq   integer     NOT NULL DEFAULT 0,
    deleted      boolean     NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (supplier_id, product_id, model)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
        ALTER TABLE product_embeddings ALTER COLUMN embedding TYPE vector USING embedding::vector;
    END IF;
END
$$;

-- TRUNCATE events seen by the encoders, per model and supplier (0: every supplier). An upsert
-- older than a truncate of its scope is dropped, so a late insert cannot undo a truncate.
CREATE TABLE product_embedding_truncations (
    model       text    NOT NULL,
    supplier_id integer NOT NULL,
    source_lsn  pg_lsn  NOT NULL,
    source_seq  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (model, supplier_id)
);
