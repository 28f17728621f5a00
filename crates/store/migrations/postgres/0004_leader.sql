-- Which server leads when several share one database: the holder of a lease it renews, and
-- an epoch that grows with each new holder. One row.
CREATE TABLE leader (
    id         BIGINT PRIMARY KEY,
    holder     TEXT   NOT NULL,
    api_url    TEXT   NOT NULL,
    epoch      BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
INSERT INTO leader (id, holder, api_url, epoch, expires_ms) VALUES (1, '', '', 0, 0);
