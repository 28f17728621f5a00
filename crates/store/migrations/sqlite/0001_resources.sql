-- Every workspace resource: one row, its JSON body, and a version for optimistic concurrency.
CREATE TABLE resources (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    status           TEXT,
    body             TEXT    NOT NULL,
    resource_version INTEGER NOT NULL,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    UNIQUE (kind, name)
);
CREATE INDEX resources_kind_status ON resources (kind, status);
