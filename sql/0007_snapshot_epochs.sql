-- A snapshot is an epoch in the stream (see package replication's EpochMessage): the epoch's id
-- and the LSN of its open message, recorded once every transaction that committed before the
-- open is visible and until_id has been read again. An unfinished snapshot without them has not
-- opened its epoch yet (or was written by an older tidemark): its next run opens one and reads
-- the supplier from the start.
ALTER TABLE tidemark_snapshots
    ADD COLUMN epoch_id text,
    ADD COLUMN open_lsn pg_lsn;
