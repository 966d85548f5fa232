-- Version 8 -> 9 (issue 16): a job's error rows by job, for `crawler-agent jobs show`
-- (which prints every failure of the job with its stack trace) without scanning errors.
CREATE INDEX errors_job ON errors (job_id, id) WHERE job_id IS NOT NULL;
