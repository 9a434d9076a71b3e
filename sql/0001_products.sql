-- Suppliers and their products. products is LIST-partitioned by supplier: one partition per
-- supplier (created by `tidemark supplier add` or by the loader), and no DEFAULT partition,
-- because attaching a partition next to a default one has to scan the default.
CREATE TABLE suppliers (
    id         integer     PRIMARY KEY,
    name       text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    supplier_id integer       NOT NULL,
    sku         varchar(100)  NOT NULL,
    name        text          NOT NULL,
    description text,
    price       numeric(12,2),
    currency    char(3),
    status      text          NOT NULL DEFAULT 'pending',
    attributes  jsonb         NOT NULL DEFAULT '{}',
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (supplier_id, id),
    UNIQUE (supplier_id, sku)
) PARTITION BY LIST (supplier_id);

-- The lean set: every index is paid on every insert, so nothing beyond these.
CREATE INDEX products_updated_at_idx ON products (updated_at);
CREATE INDEX products_pending_idx ON products (supplier_id, id) WHERE status = 'pending';
