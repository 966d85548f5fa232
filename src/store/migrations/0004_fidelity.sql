-- Protocol fidelity, second pass: unusable credentials, operator-requested resume,
-- cancel while running, ignored messages, per-credential rollup.

ALTER TABLE credentials ADD COLUMN unusable_since TEXT;
ALTER TABLE credentials ADD COLUMN unusable_reason TEXT;

ALTER TABLE jobs ADD COLUMN resume_next INTEGER NOT NULL DEFAULT 0 CHECK (resume_next IN (0, 1));
ALTER TABLE jobs ADD COLUMN cancel_pending INTEGER NOT NULL DEFAULT 0 CHECK (cancel_pending IN (0, 1));
CREATE INDEX jobs_cancel_pending ON jobs (dispatched_at) WHERE cancel_pending = 1;

CREATE TABLE ignored_messages (
    id             INTEGER PRIMARY KEY,
    at             TEXT NOT NULL,
    kind           TEXT NOT NULL,
    job_id         TEXT,
    job_status     TEXT,
    connection_id  INTEGER,
    summary        TEXT NOT NULL
);
CREATE INDEX ignored_messages_at ON ignored_messages (at);

CREATE VIEW credential_rollup AS
SELECT c.id AS credential_id, c.name,
       CASE WHEN c.unusable_since IS NULL THEN 'usable' ELSE 'unusable' END AS token_state,
       count(j.id) FILTER (WHERE j.status = 'queued') AS queued,
       count(j.id) FILTER (WHERE j.status IN ('assigned', 'running')) AS running,
       count(j.id) FILTER (WHERE j.status = 'finished') AS finished,
       count(j.id) FILTER (WHERE j.status = 'failed') AS failed,
       count(j.id) FILTER (WHERE j.status = 'cancelled') AS cancelled,
       coalesce(sum(CASE
           WHEN j.status = 'finished' THEN
               (SELECT sum(CAST(value AS INTEGER)) FROM json_each(
                    CASE WHEN json_valid(j.final_counts) AND json_type(j.final_counts) = 'object'
                         THEN j.final_counts END)
                WHERE type IN ('integer', 'real'))
           WHEN j.status IN ('assigned', 'running') THEN
               (SELECT p.processed FROM progress_snapshots p WHERE p.job_id = j.id
                ORDER BY p.id DESC LIMIT 1)
       END), 0) AS items_processed
FROM credentials c LEFT JOIN jobs j ON j.credential_id = c.id
GROUP BY c.id;
