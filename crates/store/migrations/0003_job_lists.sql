-- Job lists filtered in SQL: by parent (a pipeline's steps, a sweep's trials) and by
-- experiment, newest first, without reading every job.
CREATE INDEX resources_job_parent ON resources (kind, json_extract(body, '$.parent_job_name'), seq);
CREATE INDEX resources_job_experiment ON resources (kind, json_extract(body, '$.experiment_name'), seq);
