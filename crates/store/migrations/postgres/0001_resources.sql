-- Every workspace resource: one row, its JSON body, and a version for optimistic concurrency.
-- (PostgreSQL; the SQLite schema is in ../sqlite, migration for migration.)
CREATE TABLE resources (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    status           TEXT,
    body             TEXT   NOT NULL,
    resource_version BIGINT NOT NULL,
    created_at       TEXT   NOT NULL,
    updated_at       TEXT   NOT NULL,
    UNIQUE (kind, name)
);
CREATE INDEX resources_kind_status ON resources (kind, status);
