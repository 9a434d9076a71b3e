-- A TRUNCATE of one supplier's partition reaches the stream. The publication publishes through
-- the partition root (publish_via_partition_root), and pgoutput then sends a TRUNCATE only when
-- it names the root: one of products_s<ID> alone never reaches the slot, and its products would
-- stay alive downstream. So a trigger on each partition writes a transactional logical message
-- (prefix tidemark.truncate, content {"schema", "table"}) in the truncating transaction, which
-- the replicator publishes as that partition's truncate event, in commit order.
--
-- A TRUNCATE of products itself is published by pgoutput and reaches every partition's
-- trigger too: the root's own triggers mark the statement so that the partitions' stay quiet
-- and it stays one event. The root's BEFORE trigger fires before its partitions' (PostgreSQL
-- fires them in the order it lists the tables: those named, then their partitions), and its
-- AFTER trigger clears the mark at the end of the statement.
--
-- The triggers fire ALWAYS, also under session_replication_role = replica (a logical
-- replication apply worker filling products from elsewhere), and the functions run as their
-- owner, so EXECUTE on pg_logical_emit_message may be revoked from PUBLIC.
--
-- Creating a trigger locks its table against writes: fail fast rather than queue every writer
-- of products behind a long load. Run tidemark migrate again once the load is done.
SET LOCAL lock_timeout = '10s';

CREATE FUNCTION tidemark_truncate_root() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    PERFORM set_config('tidemark.truncating_root', CASE WHEN TG_WHEN = 'BEFORE' THEN 'on' ELSE '' END, true);
    RETURN NULL;
END
$$;

CREATE FUNCTION tidemark_truncate_partition() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    -- A table detached from products keeps its trigger: its truncates are no longer ours.
    IF coalesce(current_setting('tidemark.truncating_root', true), '') <> 'on'
       AND EXISTS (SELECT 1 FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhparent
                   WHERE h.inhrelid = TG_RELID AND c.relname = 'products') THEN
        PERFORM pg_logical_emit_message(true, 'tidemark.truncate',
            json_build_object('schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tidemark_truncate_before BEFORE TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION tidemark_truncate_root();
CREATE TRIGGER tidemark_truncate_after AFTER TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION tidemark_truncate_root();
ALTER TABLE products ENABLE ALWAYS TRIGGER tidemark_truncate_before;
ALTER TABLE products ENABLE ALWAYS TRIGGER tidemark_truncate_after;

-- Statement triggers are not cloned to partitions: each partition gets its own, here for those
-- that exist and from catalog.EnsurePartition for those created later.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'products'::regclass LOOP
        EXECUTE format('CREATE TRIGGER tidemark_truncate BEFORE TRUNCATE ON %s
            FOR EACH STATEMENT EXECUTE FUNCTION tidemark_truncate_partition()', part);
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER tidemark_truncate', part);
    END LOOP;
END
$$;
