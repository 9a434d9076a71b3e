-- What `tidemark status` shows per supplier, kept so that reading it costs no scan of products
-- or product_embeddings: a record of every load, and vector counts kept by triggers.

-- One row per `tidemark load` that committed: the loader writes it in the load's own
-- transaction, so a row exists exactly when the load's changes do.
CREATE TABLE tidemark_loads (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    supplier_id integer     NOT NULL,
    -- The load transaction's start (now()): the updated_at of every product it wrote.
    started_at  timestamptz NOT NULL DEFAULT now(),
    -- When the row was written, just before the commit.
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    full_drop   boolean     NOT NULL,
    inserted    bigint      NOT NULL,
    updated     bigint      NOT NULL,
    unchanged   bigint      NOT NULL,
    deleted     bigint      NOT NULL,
    rejected    bigint      NOT NULL,
    duplicates  bigint      NOT NULL,
    -- The supplier's products once the load commits: exact, since other writers wait for it.
    products    bigint      NOT NULL,
    -- The WAL position when the row was written: the load's commit comes after it, so a
    -- replay from here (replicate --from-lsn) publishes the load again.
    wal_lsn     pg_lsn      NOT NULL DEFAULT pg_current_wal_insert_lsn()
);

CREATE INDEX tidemark_loads_supplier_idx ON tidemark_loads (supplier_id, id);

-- Live and deleted (tombstone) vectors per supplier and model, kept by statement triggers on
-- product_embeddings in the writing transaction, so they are exact and cost one small upsert
-- per statement. Rows of a truncated product_embeddings are removed with it.
CREATE TABLE tidemark_vector_counts (
    supplier_id integer NOT NULL,
    model       text    NOT NULL,
    live        bigint  NOT NULL DEFAULT 0,
    deleted     bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (supplier_id, model)
);

-- The INSERT and the UPDATE triggers of one INSERT … ON CONFLICT each upsert counter rows;
-- two encoders doing so in opposite orders would deadlock, so the counters of one transaction
-- are written under one lock, held to its commit (the end of an encoder's batch).
CREATE FUNCTION tidemark_count_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7594832167384961310);
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tidemark_vector_counts AS c (supplier_id, model, live, deleted)
        SELECT supplier_id, model, count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted)
        FROM new_rows GROUP BY supplier_id, model ORDER BY supplier_id, model
        ON CONFLICT (supplier_id, model) DO UPDATE
            SET live = c.live + EXCLUDED.live, deleted = c.deleted + EXCLUDED.deleted;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO tidemark_vector_counts AS c (supplier_id, model, live, deleted)
        SELECT supplier_id, model, sum(live), sum(deleted)
        FROM (SELECT supplier_id, model, (NOT deleted)::int AS live, deleted::int AS deleted FROM new_rows
              UNION ALL
              SELECT supplier_id, model, -(NOT deleted)::int, -(deleted::int) FROM old_rows) d
        GROUP BY supplier_id, model
        HAVING sum(live) <> 0 OR sum(deleted) <> 0
        ORDER BY supplier_id, model
        ON CONFLICT (supplier_id, model) DO UPDATE
            SET live = c.live + EXCLUDED.live, deleted = c.deleted + EXCLUDED.deleted;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE tidemark_vector_counts c SET live = c.live - d.live, deleted = c.deleted - d.deleted
        FROM (SELECT supplier_id, model, count(*) FILTER (WHERE NOT deleted) AS live,
                     count(*) FILTER (WHERE deleted) AS deleted
              FROM old_rows GROUP BY supplier_id, model) d
        WHERE c.supplier_id = d.supplier_id AND c.model = d.model;
    ELSE -- TRUNCATE
        DELETE FROM tidemark_vector_counts;
    END IF;
    RETURN NULL;
END
$$;

-- Transition tables take one event per trigger.
CREATE TRIGGER tidemark_count_vectors_insert AFTER INSERT ON product_embeddings
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tidemark_count_vectors();
CREATE TRIGGER tidemark_count_vectors_update AFTER UPDATE ON product_embeddings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tidemark_count_vectors();
CREATE TRIGGER tidemark_count_vectors_delete AFTER DELETE ON product_embeddings
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tidemark_count_vectors();
CREATE TRIGGER tidemark_count_vectors_truncate AFTER TRUNCATE ON product_embeddings
    FOR EACH STATEMENT EXECUTE FUNCTION tidemark_count_vectors();

-- The vectors already there. CREATE TRIGGER locked product_embeddings against writes until this
-- migration commits, so none slips between the triggers and the count.
INSERT INTO tidemark_vector_counts (supplier_id, model, live, deleted)
SELECT supplier_id, model, count(*) FILTER (WHERE NOT deleted), count(*) FILTER (WHERE deleted)
FROM product_embeddings GROUP BY supplier_id, model;
