-- product_embeddings becomes LIST-partitioned by supplier, as products is: one partition
-- product_embeddings_s<ID> per supplier, created by the encoders when they first write a vector
-- of that supplier. Each partition carries its own approximate-nearest-neighbour index per model
-- (built by `tidemark encode` or `tidemark index`), so a supplier-scoped search reads one small
-- index and keeping an index fresh costs what the supplier's size costs, not the catalogue's.
-- There is no DEFAULT partition: attaching a partition next to a non-empty one scans it.
--
-- Existing vectors are carried over in this transaction (encoders and searches wait for it:
-- about a minute per million vectors on a small machine). The embedding column keeps its type,
-- vector or real[].
ALTER TABLE product_embeddings RENAME TO product_embeddings_0002;
ALTER TABLE product_embeddings_0002 RENAME CONSTRAINT product_embeddings_pkey TO product_embeddings_0002_pkey;

CREATE TABLE product_embeddings (
    LIKE product_embeddings_0002 INCLUDING DEFAULTS,
    PRIMARY KEY (supplier_id, product_id, model)
) PARTITION BY LIST (supplier_id);

DO $$
DECLARE
    s integer;
BEGIN
    FOR s IN SELECT DISTINCT supplier_id FROM product_embeddings_0002 ORDER BY 1 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF product_embeddings FOR VALUES IN (%s)',
            'product_embeddings_s' || s, s);
    END LOOP;
END
$$;

INSERT INTO product_embeddings SELECT * FROM product_embeddings_0002;
DROP TABLE product_embeddings_0002;
