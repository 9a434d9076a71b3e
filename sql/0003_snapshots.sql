-- Progress of incremental snapshots (`tidemark snapshot`, and replicate's initial snapshot).
-- last_id is updated in the same transaction as the chunk's high watermark, so a crash resumes
-- after the last chunk that reached the WAL: nothing lost, and a repeated chunk is deduplicated.
CREATE TABLE tidemark_snapshots (
    id          text        PRIMARY KEY,
    supplier_id integer     NOT NULL,
    last_id     bigint      NOT NULL DEFAULT 0,
    -- The highest id when the snapshot began: rows inserted later reach the stream as
    -- inserts anyway, and without the bound a busy writer could keep the snapshot going.
    until_id    bigint      NOT NULL,
    chunks      integer     NOT NULL DEFAULT 0,
    rows        bigint      NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- At most one unfinished snapshot per supplier: a second request resumes it.
CREATE UNIQUE INDEX tidemark_snapshots_running_idx ON tidemark_snapshots (supplier_id)
    WHERE finished_at IS NULL;
