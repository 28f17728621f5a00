-- Job lists filtered in SQL: by parent (a pipeline's steps, a sweep's trials) and by
-- experiment, newest first, without reading every job. (PostgreSQL; the expressions are the
-- ones the store's queries use, so the planner matches them.)
CREATE INDEX resources_job_parent ON resources (kind, ((body::jsonb ->> 'parent_job_name')), seq);
CREATE INDEX resources_job_experiment ON resources (kind, ((body::jsonb ->> 'experiment_name')), seq);
-- Newest first within a kind, a page at a time, without sorting the whole kind.
CREATE INDEX resources_kind_seq ON resources (kind, seq);
-- The archived few (`job list --archived-only`, retention) without reading the rest.
CREATE INDEX resources_archived ON resources (kind, ((body::jsonb ->> 'archived')), seq);

-- Counts by status kept as resources change: /metrics reads a few rows, however many jobs.
CREATE TABLE status_counts (
    kind   TEXT   NOT NULL,
    status TEXT   NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (kind, status)
);
INSERT INTO status_counts (kind, status, n)
    SELECT kind, status, COUNT(*) FROM resources WHERE status IS NOT NULL GROUP BY kind, status;

CREATE FUNCTION status_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') AND OLD.status IS NOT NULL THEN
        UPDATE status_counts SET n = n - 1 WHERE kind = OLD.kind AND status = OLD.status;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status IS NOT NULL THEN
        INSERT INTO status_counts (kind, status, n) VALUES (NEW.kind, NEW.status, 1)
            ON CONFLICT (kind, status) DO UPDATE SET n = status_counts.n + 1;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER status_counts_insert AFTER INSERT ON resources
    FOR EACH ROW WHEN (NEW.status IS NOT NULL) EXECUTE FUNCTION status_counts_follow();
CREATE TRIGGER status_counts_delete AFTER DELETE ON resources
    FOR EACH ROW WHEN (OLD.status IS NOT NULL) EXECUTE FUNCTION status_counts_follow();
CREATE TRIGGER status_counts_update AFTER UPDATE OF status ON resources
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION status_counts_follow();
