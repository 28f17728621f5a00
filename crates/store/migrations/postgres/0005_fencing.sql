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

-- Every table of the state; `leader` itself is written by the lease, not fenced.
DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['resources', 'experiments', 'experiment_tags', 'runs', 'params',
                             'run_tags', 'metric_series', 'metric_points', 'logged_models'] LOOP
        EXECUTE format('CREATE TRIGGER fence BEFORE INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION berth_fence()', t);
    END LOOP;
END $$;
