-- Job lists filtered in SQL: by parent (a pipeline's steps, a sweep's trials) and by
-- experiment, newest first, without reading every job.
CREATE INDEX resources_job_parent ON resources (kind, json_extract(body, '$.parent_job_name'), seq);
CREATE INDEX resources_job_experiment ON resources (kind, json_extract(body, '$.experiment_name'), seq);
-- Newest first within a kind, a page at a time, without sorting the whole kind.
CREATE INDEX resources_kind_seq ON resources (kind, seq);
-- The archived few (`job list --archived-only`, retention) without reading the rest.
CREATE INDEX resources_archived ON resources (kind, json_extract(body, '$.archived'), seq);

-- Counts by status kept as resources change: /metrics reads a few rows, however many jobs.
CREATE TABLE status_counts (
    kind   TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (kind, status)
);
INSERT INTO status_counts (kind, status, n)
    SELECT kind, status, COUNT(*) FROM resources WHERE status IS NOT NULL GROUP BY kind, status;
CREATE TRIGGER status_counts_insert AFTER INSERT ON resources WHEN NEW.status IS NOT NULL
BEGIN
    INSERT INTO status_counts (kind, status, n) VALUES (NEW.kind, NEW.status, 1)
        ON CONFLICT (kind, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER status_counts_delete AFTER DELETE ON resources WHEN OLD.status IS NOT NULL
BEGIN
    UPDATE status_counts SET n = n - 1 WHERE kind = OLD.kind AND status = OLD.status;
END;
CREATE TRIGGER status_counts_update AFTER UPDATE OF status ON resources
    WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE status_counts SET n = n - 1
        WHERE kind = OLD.kind AND status = OLD.status AND OLD.status IS NOT NULL;
    INSERT INTO status_counts (kind, status, n) SELECT NEW.kind, NEW.status, 1
        WHERE NEW.status IS NOT NULL
        ON CONFLICT (kind, status) DO UPDATE SET n = n + 1;
END;
