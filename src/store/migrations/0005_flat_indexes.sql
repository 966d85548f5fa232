-- Version 1 -> 2: every statement on a hot or periodic path reads an index whose size
-- does not grow with the tables (issue 14). See schema.sql for what each one serves.

-- The claim: the head of each entity type, in dispatch order, without a sort.
DROP INDEX IF EXISTS jobs_queue;
CREATE INDEX jobs_ready ON jobs (entity_type, priority DESC, created_at, id)
    WHERE status = 'queued' AND not_before IS NULL;
CREATE INDEX jobs_backoff ON jobs (not_before) WHERE status = 'queued' AND not_before IS NOT NULL;
-- Counting and listing by status, oldest queued job.
CREATE INDEX jobs_status ON jobs (status);
-- Discoveries due again.
CREATE INDEX jobs_rediscover ON jobs (finished_at) WHERE entity_type = 'areas' AND status = 'finished';
-- Live connections, and the latest heartbeat on any connection (restart check).
CREATE INDEX connections_live ON connections (id) WHERE closed_at IS NULL;
CREATE INDEX connections_heartbeat ON connections (last_heartbeat_at)
    WHERE last_heartbeat_at IS NOT NULL;
-- Discovery writes one B-tree less per area; nothing in the agent looks areas up by path.
DROP INDEX IF EXISTS areas_full_path;
