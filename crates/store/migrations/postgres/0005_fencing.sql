-- Fencing: a leader's connections carry its lease epoch (the session setting berth.epoch), and
-- every statement that changes the state checks it against the lease row, holding that row
-- (FOR SHARE) until its transaction ends. A server paused past its lease, whose lease another
-- took over, has its writes refused by the database itself; a takeover waits for the writes
-- already under way. Connections without the setting (one server alone, tools) are not
-- checked.
CREATE FUNCTION berth_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    mine TEXT := current_setting('berth.epoch', true);
BEGIN
    IF mine IS NULL OR mine = '' THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM leader WHERE id = 1 AND epoch = mine::BIGINT FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this server''s leader lease (epoch %) was taken over by another server: it may no longer write', mine
            USING ERRCODE = 'BF001';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON resources
    FOR EACH STATEMENT EXECUTE FUNCTION berth_fence();
CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON experiments
    FOR EACH STATEMENT EXECUTE FUNCTION berth_fence();
CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON experiment_tags
    FOR EACH STATEMENT EXECUTE FUNCTION berth_fence();
CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON runs
    FOR EACH STATEMENT EXECUTE FUNCTION berth_fence();
CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON params
    FOR EACH STATEMENT EXECUTE FUNCTION berth_fence();
CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON run_tags
    FOR EACH STATEMENT EXECUTE FUNCTION berth_fence();
CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON metric_series
    FOR EACH STATEMENT EXECUTE FUNCTION berth_fence();
CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON metric_points
    FOR EACH STATEMENT EXECUTE FUNCTION berth_fence();
CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON logged_models
    FOR EACH STATEMENT EXECUTE FUNCTION berth_fence();
