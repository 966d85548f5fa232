-- crawler-agent database schema.
--
-- One file holds everything the agent knows: the credentials it hands out, the job
-- queue and every transition of every job, the crawler's progress reports, discovered
-- groups and projects, connections and heartbeats, token refreshes, and every error.
--
-- Conventions, so that `sqlite3 agent.db` is pleasant to use:
--   * timestamps are TEXT, UTC, `YYYY-MM-DDTHH:MM:SS.sssZ` (sortable, readable);
--   * JSON payloads are TEXT holding JSON, so json_extract() works on them;
--   * every column holding one of a fixed set of values has a CHECK constraint;
--   * only the indexes a hot path needs exist: each secondary index on an append-only
--     table costs write throughput.
-- The schema uses nothing newer than SQLite 3.37 (no STRICT tables, no ->> operator)
-- so the sqlite3 CLI shipped by Debian and RHEL can open the file.
--
-- The agent applies this file itself (it is embedded in the binary) and records the
-- version in PRAGMA user_version; PRAGMA application_id marks the file as ours.

-- Where tokens come from. Secrets (access_token, refresh_token, oauth_client_secret)
-- are never logged and never printed by the CLI; a token leaves the process only
-- inside a job_response or a token_refresh_response.
--   env, file  the operator stored the token (from an environment variable or file);
--              a refresh request is answered only after the operator replaced it
--   command    token_command prints a token (or JSON with access_token/expires_at)
--   oauth      GitLab OAuth: refresh_token + application id/secret, rotated on refresh
CREATE TABLE credentials (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    gitlab_url           TEXT NOT NULL,       -- base URL, no trailing '/' and no '/api/...'
    access_token         TEXT NOT NULL,       -- '' until an OAuth credential's first refresh
    token_source         TEXT NOT NULL CHECK (token_source IN ('env', 'file', 'command', 'oauth')),
    token_command        TEXT,                -- for 'command': the command line, run without a shell
    refresh_token        TEXT,                -- for 'oauth'
    oauth_client_id      TEXT,                -- for 'oauth'
    oauth_client_secret  TEXT,                -- for 'oauth'
    expires_at           TEXT,                -- NULL when unknown (e.g. a PAT)
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,       -- also: when the token last changed
    -- Set when the token is empty or known expired and nothing could refresh it: its
    -- jobs stay queued until an operator replaces the token or a refresh succeeds.
    unusable_since       TEXT,
    unusable_reason      TEXT,
    CHECK (token_source != 'command' OR token_command IS NOT NULL),
    CHECK (token_source != 'oauth' OR (refresh_token IS NOT NULL AND oauth_client_id IS NOT NULL
                                       AND oauth_client_secret IS NOT NULL))
);

-- Each connection the crawler opened, with the latest heartbeat it sent on it.
-- closed_at IS NULL means the connection is live (see the live_connections view).
CREATE TABLE connections (
    id                 INTEGER PRIMARY KEY,
    opened_at          TEXT NOT NULL,
    closed_at          TEXT,
    close_reason       TEXT,
    peer_pid           INTEGER,
    peer_uid           INTEGER,
    peer_gid           INTEGER,
    bytes_in           INTEGER NOT NULL DEFAULT 0,
    bytes_out          INTEGER NOT NULL DEFAULT 0,
    messages_in        INTEGER NOT NULL DEFAULT 0,
    messages_out       INTEGER NOT NULL DEFAULT 0,
    job_requests       INTEGER NOT NULL DEFAULT 0,
    heartbeats         INTEGER NOT NULL DEFAULT 0,
    last_heartbeat_at  TEXT,
    crawler_uptime_s   REAL,                  -- crawler process uptime from its heartbeat
    crawler_status     TEXT,                  -- free text: the client says 'idle'
    crawler_memory     TEXT,                  -- JSON {rss, heapTotal, heapUsed, ...}
    stale              INTEGER NOT NULL DEFAULT 0 CHECK (stale IN (0, 1))
);
-- Open connections (the monitor's stale check, live_connections), and the latest
-- heartbeat on any connection (every heartbeat's crawler-restart check).
CREATE INDEX connections_live ON connections (id) WHERE closed_at IS NULL;
-- Retention of closed connections.
CREATE INDEX connections_closed ON connections (closed_at) WHERE closed_at IS NOT NULL;
CREATE INDEX connections_heartbeat ON connections (last_heartbeat_at)
    WHERE last_heartbeat_at IS NOT NULL;

-- The job queue. A job is identified by its text id (a ULID: sortable by creation).
-- (credential_id, entity_type, entity_id) is unique, so adding the same work twice,
-- by an operator or by a repeated discovery, creates nothing new.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    credential_id   INTEGER NOT NULL REFERENCES credentials(id) ON DELETE CASCADE,
    entity_type     TEXT NOT NULL CHECK (entity_type IN ('areas', 'project', 'group', 'user',
                        'issue', 'merge_request', 'commit', 'branch', 'pipeline', 'release')),
    entity_id       TEXT NOT NULL,            -- sent as entityId; GitLab id or credential name
    namespace_path  TEXT,                     -- group full_path / project path_with_namespace
    priority        INTEGER NOT NULL DEFAULT 0,   -- higher is dispatched first
    status          TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'assigned',
                        'running', 'finished', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,   -- dispatches so far
    max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
    not_before      TEXT,                     -- retry backoff: not dispatched before this
    connection_id   INTEGER REFERENCES connections(id) ON DELETE SET NULL,
    parent_job_id   TEXT REFERENCES jobs(id) ON DELETE SET NULL,  -- the discovery that made it
    resume_state    TEXT,                     -- JSON ResumeState, latest known
    last_error      TEXT,
    final_counts    TEXT,                     -- JSON from job_completed
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    dispatched_at   TEXT,
    started_at      TEXT,
    finished_at     TEXT,
    -- 1: the operator asked for the next dispatch to carry resume_state
    -- (`jobs retry ID --resume`); a plain or automatic retry never sends it.
    resume_next     INTEGER NOT NULL DEFAULT 0 CHECK (resume_next IN (0, 1)),
    -- 1: cancelled while the crawler had it; it still counts as in flight for the
    -- one-job rule until the crawler reports its end or proves idle.
    cancel_pending  INTEGER NOT NULL DEFAULT 0 CHECK (cancel_pending IN (0, 1)),
    UNIQUE (credential_id, entity_type, entity_id)
);
-- Every statement on a hot or periodic path reads one of these without a sort, and
-- its cost does not grow with the table (tests/query_plans.rs checks each plan).
--   jobs_ready      the claim: per entity type, the queued jobs past any backoff in
--                   exactly the dispatch order (priority first, then oldest, then id),
--                   so the head of each allowed type is one seek and a paused type's
--                   rows are never walked;
--   jobs_backoff    queued jobs waiting for not_before; the claim clears not_before of
--                   those that are due, which moves them into jobs_ready;
--   jobs_in_flight  the few jobs handed out: busy check, orphan sweep, running_jobs;
--   jobs_status     counts per status, `jobs list --status`, the oldest queued job;
--   jobs_rediscover finished discoveries, by age.
CREATE INDEX jobs_ready ON jobs (entity_type, priority DESC, created_at, id)
    WHERE status = 'queued' AND not_before IS NULL;
CREATE INDEX jobs_backoff ON jobs (not_before) WHERE status = 'queued' AND not_before IS NOT NULL;
CREATE INDEX jobs_in_flight ON jobs (dispatched_at) WHERE status IN ('assigned', 'running');
CREATE INDEX jobs_cancel_pending ON jobs (dispatched_at) WHERE cancel_pending = 1;
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX jobs_rediscover ON jobs (finished_at) WHERE entity_type = 'areas' AND status = 'finished';

-- Jobs per credential, entity type and status, kept by the triggers below on every
-- insert, change and delete of a job (operator commands, cascades and retention
-- included), so `status`, `metrics` and `credential_rollup` read a few rows instead
-- of counting a million jobs. `items` is what the finished jobs' finalCounts add up
-- to (each job's numbers summed, clamped to 0..10^15, and the row to 10^18, so a
-- hostile payload can neither overflow, subtract nor fail the write); 0 for the
-- other statuses. `db check` recounts; `db check --repair` rebuilds.
CREATE TABLE job_counts (
    credential_id   INTEGER NOT NULL,
    entity_type     TEXT NOT NULL,
    status          TEXT NOT NULL,
    jobs            INTEGER NOT NULL,
    items           INTEGER NOT NULL,
    PRIMARY KEY (credential_id, entity_type, status)
) WITHOUT ROWID;
CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_counts (credential_id, entity_type, status, jobs, items)
    VALUES (NEW.credential_id, NEW.entity_type, NEW.status, 1,
            CASE WHEN NEW.status = 'finished' AND json_valid(NEW.final_counts)
                      AND json_type(NEW.final_counts) = 'object'
                 THEN coalesce((SELECT CAST(min(max(total(value), 0), 1e15) AS INTEGER)
                                FROM json_each(NEW.final_counts)
                                WHERE type IN ('integer', 'real')), 0)
                 ELSE 0 END)
    ON CONFLICT (credential_id, entity_type, status)
    DO UPDATE SET jobs = jobs + 1, items = min(items + excluded.items, 1000000000000000000);
END;
CREATE TRIGGER job_counts_update
AFTER UPDATE OF credential_id, entity_type, status, final_counts ON jobs
WHEN OLD.status IS NOT NEW.status OR OLD.entity_type IS NOT NEW.entity_type
     OR OLD.credential_id IS NOT NEW.credential_id
     OR OLD.final_counts IS NOT NEW.final_counts
BEGIN
    UPDATE job_counts SET jobs = jobs - 1,
        items = max(0, items - CASE WHEN OLD.status = 'finished' AND json_valid(OLD.final_counts)
                                  AND json_type(OLD.final_counts) = 'object'
                             THEN coalesce((SELECT CAST(min(max(total(value), 0), 1e15) AS INTEGER)
                                            FROM json_each(OLD.final_counts)
                                            WHERE type IN ('integer', 'real')), 0)
                             ELSE 0 END)
    WHERE credential_id = OLD.credential_id AND entity_type = OLD.entity_type
      AND status = OLD.status;
    INSERT INTO job_counts (credential_id, entity_type, status, jobs, items)
    VALUES (NEW.credential_id, NEW.entity_type, NEW.status, 1,
            CASE WHEN NEW.status = 'finished' AND json_valid(NEW.final_counts)
                      AND json_type(NEW.final_counts) = 'object'
                 THEN coalesce((SELECT CAST(min(max(total(value), 0), 1e15) AS INTEGER)
                                FROM json_each(NEW.final_counts)
                                WHERE type IN ('integer', 'real')), 0)
                 ELSE 0 END)
    ON CONFLICT (credential_id, entity_type, status)
    DO UPDATE SET jobs = jobs + 1, items = min(items + excluded.items, 1000000000000000000);
END;
CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET jobs = jobs - 1,
        items = max(0, items - CASE WHEN OLD.status = 'finished' AND json_valid(OLD.final_counts)
                                  AND json_type(OLD.final_counts) = 'object'
                             THEN coalesce((SELECT CAST(min(max(total(value), 0), 1e15) AS INTEGER)
                                            FROM json_each(OLD.final_counts)
                                            WHERE type IN ('integer', 'real')), 0)
                             ELSE 0 END)
    WHERE credential_id = OLD.credential_id AND entity_type = OLD.entity_type
      AND status = OLD.status;
END;
-- A removed credential's jobs are gone (cascade): so are its counts.
CREATE TRIGGER job_counts_credential_delete AFTER DELETE ON credentials BEGIN
    DELETE FROM job_counts WHERE credential_id = OLD.id;
END;

-- Every transition of every job, and every message that was refused because it came
-- too late (a terminal job) or out of order: the audit trail.
CREATE TABLE job_events (
    id             INTEGER PRIMARY KEY,
    job_id         TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    at             TEXT NOT NULL,
    event          TEXT NOT NULL CHECK (event IN ('created', 'dispatched', 'started',
                       'completed', 'failed', 'requeued', 'lost', 'cancelled', 'retried',
                       'rediscover', 'ignored', 'discovered')),
    from_status    TEXT,
    to_status      TEXT,
    connection_id  INTEGER,
    detail         TEXT                       -- JSON, never a token
);
CREATE INDEX job_events_job ON job_events (job_id, id);

-- Full progress history: one row per job_progress message, every field kept.
CREATE TABLE progress_snapshots (
    id                        INTEGER PRIMARY KEY,
    job_id                    TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    received_at               TEXT NOT NULL,
    sent_at                   TEXT,          -- the crawler's own timestamp, as sent
    connection_id             INTEGER,
    stage                     TEXT,          -- discovering/fetching/completed/failed, as sent
    entity_type               TEXT,
    processed                 INTEGER,
    total                     INTEGER,
    message                   TEXT,
    item_counts               TEXT,          -- JSON object
    current_page              INTEGER,
    processing_rate           REAL,
    estimated_time_remaining  REAL,
    resume_state              TEXT           -- JSON
);
CREATE INDEX progress_snapshots_job ON progress_snapshots (job_id, id);

-- Every problem the agent saw: bad input, failed jobs (the whole job_failed payload),
-- storage and connection trouble, refused peers, token failures.
CREATE TABLE errors (
    id              INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    category        TEXT NOT NULL CHECK (category IN ('protocol', 'validation', 'job',
                        'storage', 'connection', 'security', 'config', 'token', 'internal')),
    severity        TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    message         TEXT NOT NULL,
    job_id          TEXT,                     -- no foreign key: unknown job ids are errors too
    connection_id   INTEGER,
    error_type      TEXT,                     -- job_failed.errorType
    is_recoverable  INTEGER CHECK (is_recoverable IN (0, 1)),
    stack_trace     TEXT,
    context         TEXT,                     -- JSON
    partial_counts  TEXT,                     -- JSON
    resume_state    TEXT                      -- JSON
);
CREATE INDEX errors_at ON errors (at);

-- Rows of the two histories `metrics` counts by label (job events by event, errors by
-- category and severity), kept by triggers on insert and delete (retention and
-- cascades included), so a scrape reads a few rows however long the history kept.
CREATE TABLE job_event_counts (
    event   TEXT PRIMARY KEY,
    rows    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER job_event_counts_insert AFTER INSERT ON job_events BEGIN
    INSERT INTO job_event_counts (event, rows) VALUES (NEW.event, 1)
    ON CONFLICT (event) DO UPDATE SET rows = rows + 1;
END;
CREATE TRIGGER job_event_counts_delete AFTER DELETE ON job_events BEGIN
    UPDATE job_event_counts SET rows = rows - 1 WHERE event = OLD.event;
END;
CREATE TABLE error_counts (
    category    TEXT NOT NULL,
    severity    TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    PRIMARY KEY (category, severity)
) WITHOUT ROWID;
CREATE TRIGGER error_counts_insert AFTER INSERT ON errors BEGIN
    INSERT INTO error_counts (category, severity, rows) VALUES (NEW.category, NEW.severity, 1)
    ON CONFLICT (category, severity) DO UPDATE SET rows = rows + 1;
END;
CREATE TRIGGER error_counts_delete AFTER DELETE ON errors BEGIN
    UPDATE error_counts SET rows = rows - 1
    WHERE category = OLD.category AND severity = OLD.severity;
END;
-- The newest error of each category, one seek each (`last_error_timestamp_seconds`).
CREATE INDEX errors_category ON errors (category, at);
-- A job's failures, for `jobs show`.
CREATE INDEX errors_job ON errors (job_id, id) WHERE job_id IS NOT NULL;

-- Messages that changed nothing: about a job already ended (finished, failed,
-- cancelled) or a jobId we do not know. job_status is NULL for an unknown job; the
-- summary is a bounded JSON excerpt of the message, never a token.
CREATE TABLE ignored_messages (
    id             INTEGER PRIMARY KEY,
    at             TEXT NOT NULL,
    kind           TEXT NOT NULL,             -- the message type
    job_id         TEXT,                      -- as sent (bounded); no foreign key
    job_status     TEXT,
    connection_id  INTEGER,
    summary        TEXT NOT NULL              -- JSON, at most a few KiB
);
CREATE INDEX ignored_messages_at ON ignored_messages (at);
-- Deleting a connection or an ended job sets these references to NULL: without an
-- index each delete would scan jobs.
CREATE INDEX jobs_connection ON jobs (connection_id) WHERE connection_id IS NOT NULL;
CREATE INDEX jobs_parent ON jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;

-- Discovered groups, projects and users. GitLab numbers groups and projects
-- separately, so the identity is (instance, kind, GitLab id); the path may change
-- (renames), the identity does not.
CREATE TABLE areas (
    id                  INTEGER PRIMARY KEY,
    gitlab_url          TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('group', 'project', 'user')),
    gitlab_id           TEXT NOT NULL,
    full_path           TEXT NOT NULL,
    name                TEXT NOT NULL,
    parent_gitlab_id    TEXT,
    first_seen_at       TEXT NOT NULL,
    last_seen_at        TEXT NOT NULL,
    discovered_by_job   TEXT,
    UNIQUE (gitlab_url, kind, gitlab_id)
);
-- No index on full_path: discovery writes each area once per run and nothing in the
-- agent looks areas up by path (an operator can add one: CREATE INDEX ... (full_path)).

-- Which credential can see which area.
CREATE TABLE area_credentials (
    area_id        INTEGER NOT NULL REFERENCES areas(id) ON DELETE CASCADE,
    credential_id  INTEGER NOT NULL REFERENCES credentials(id) ON DELETE CASCADE,
    PRIMARY KEY (area_id, credential_id)
) WITHOUT ROWID;

-- One row per jobs_discovered / discovery message, with the raw summary.
CREATE TABLE discoveries (
    id             INTEGER PRIMARY KEY,
    job_id         TEXT,
    received_at    TEXT NOT NULL,
    connection_id  INTEGER,
    entries        INTEGER NOT NULL,          -- elements received
    rejected       INTEGER NOT NULL,          -- elements dropped as invalid
    new_areas      INTEGER NOT NULL,
    new_jobs       INTEGER NOT NULL,
    summary        TEXT                       -- JSON discovery_summary, as sent
);
CREATE INDEX discoveries_received ON discoveries (received_at);

-- Every token_refresh_request and every refresh from a token source, with how it
-- ended. Never a token.
--   trigger  crawler: a token_refresh_request; dispatch: a token about to expire was
--            refreshed before a job was handed out
--   outcome  served: an existing token was handed out; refreshed: a new token was
--            fetched and stored; failed: the crawler got (or would get) no token
CREATE TABLE token_refreshes (
    id             INTEGER PRIMARY KEY,
    at             TEXT NOT NULL,
    trigger        TEXT NOT NULL CHECK (trigger IN ('crawler', 'dispatch')),
    job_id         TEXT,
    credential_id  INTEGER,
    connection_id  INTEGER,
    outcome        TEXT NOT NULL CHECK (outcome IN ('served', 'refreshed', 'failed')),
    detail         TEXT NOT NULL
);
CREATE INDEX token_refreshes_at ON token_refreshes (at);

-- Entity types the crawler proved it cannot run ("Unknown task type"): not dispatched
-- until an operator resumes them (`crawler-agent jobs resume-type TYPE`) or lists them
-- in dispatch.trusted_entity_types.
CREATE TABLE paused_entity_types (
    entity_type  TEXT PRIMARY KEY CHECK (entity_type IN ('areas', 'project', 'group', 'user',
                     'issue', 'merge_request', 'commit', 'branch', 'pipeline', 'release')),
    paused_at    TEXT NOT NULL,
    job_id       TEXT,
    reason       TEXT NOT NULL
);

-- The running agent's own figures, rewritten every few seconds (one row). Counters
-- count since started_at; `crawler-agent metrics` and `status` read them.
CREATE TABLE agent_runtime (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    pid                INTEGER NOT NULL,
    version            TEXT NOT NULL,
    started_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    open_connections   INTEGER NOT NULL,
    writer_queue       INTEGER NOT NULL,
    counters           TEXT NOT NULL      -- JSON {"name": number}
);

-- The notification outbox: events worth telling an operator about, each written in
-- the same transaction as the change that caused it (a job failed for good, a type
-- paused, a credential failed, the queue drained, ...). Notification sinks deliver
-- from here; `crawler-agent events` prints them. Never a secret in any column.
--   subject   what the event is about: a job id, an entity type, a credential name
--   details   JSON
CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('job_failed', 'credential_failed', 'type_paused',
                  'crawler_lost', 'crawler_absent', 'queue_drained', 'database_error', 'test')),
    subject   TEXT NOT NULL,
    topic     TEXT NOT NULL,          -- what the cooldown groups by (job_failed: entity type)
    severity  TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message   TEXT NOT NULL,
    details   TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);

-- Delivery of events to the configured sinks (`[notify]`), at least once: one row
-- per (event, sink) that is to be sent; retried with backoff across restarts.
--   digest  how many events of the same kind and topic the cooldown held back, which
--           this message sums up ("37 more"); digest_since: from when
CREATE TABLE notify_deliveries (
    id            INTEGER PRIMARY KEY,
    event_id      INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    sink          TEXT NOT NULL,
    digest        INTEGER NOT NULL DEFAULT 0,
    digest_since  TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       TEXT NOT NULL,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    sent_at       TEXT
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (next_at) WHERE status = 'pending';
-- Retention deletes old events; the cascade finds their deliveries here.
CREATE INDEX notify_deliveries_event ON notify_deliveries (event_id);

-- The cooldown: per (sink, event kind, topic), when the last message went out and
-- how many events were held back since.
CREATE TABLE notify_windows (
    sink           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    topic          TEXT NOT NULL,
    opened_at      TEXT NOT NULL,
    suppressed     INTEGER NOT NULL DEFAULT 0,
    last_event_id  INTEGER,
    PRIMARY KEY (sink, kind, topic)
) WITHOUT ROWID;

-- The last event handed to the sinks (one row).
CREATE TABLE notify_cursor (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    last_event_id  INTEGER NOT NULL
);

-- Views for the questions an operator asks.

-- How many jobs are in each state, and how old the oldest one is.
CREATE VIEW queue_summary AS
SELECT status, count(*) AS jobs, min(created_at) AS oldest_created, max(updated_at) AS last_change
FROM jobs GROUP BY status;

-- Jobs handed to the crawler and not yet finished, with their latest progress.
CREATE VIEW running_jobs AS
SELECT j.id, j.entity_type, j.entity_id, j.namespace_path, j.status, j.attempts,
       j.connection_id, j.dispatched_at, j.started_at,
       p.received_at AS progress_at, p.stage, p.processed, p.total, p.message,
       p.item_counts
FROM jobs j
LEFT JOIN progress_snapshots p
       ON p.id = (SELECT max(id) FROM progress_snapshots WHERE job_id = j.id)
WHERE j.status IN ('assigned', 'running');

-- Errors of the last 24 hours, newest first.
CREATE VIEW recent_errors AS
SELECT id, at, category, severity, job_id, connection_id, message
FROM errors
WHERE at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')
ORDER BY id DESC;

-- Per credential: how many of its jobs are in each state (from job_counts), and the
-- items its jobs reported (the finished jobs' finalCounts from job_counts, plus the
-- latest progress of the few jobs in flight).
CREATE VIEW credential_rollup AS
SELECT c.id AS credential_id, c.name,
       CASE WHEN c.unusable_since IS NULL THEN 'usable' ELSE 'unusable' END AS token_state,
       coalesce(sum(k.jobs) FILTER (WHERE k.status = 'queued'), 0) AS queued,
       coalesce(sum(k.jobs) FILTER (WHERE k.status IN ('assigned', 'running')), 0) AS running,
       coalesce(sum(k.jobs) FILTER (WHERE k.status = 'finished'), 0) AS finished,
       coalesce(sum(k.jobs) FILTER (WHERE k.status = 'failed'), 0) AS failed,
       coalesce(sum(k.jobs) FILTER (WHERE k.status = 'cancelled'), 0) AS cancelled,
       CAST(min(total(k.items) + coalesce((
           SELECT total((SELECT max(p.processed, 0) FROM progress_snapshots p
                         WHERE p.job_id = j.id ORDER BY p.id DESC LIMIT 1))
           FROM jobs j
           WHERE j.status IN ('assigned', 'running') AND +j.credential_id = c.id), 0), 1e18)
           AS INTEGER) AS items_processed
FROM credentials c LEFT JOIN job_counts k ON k.credential_id = c.id
GROUP BY c.id;

-- Connections that are open now, with the age of their last heartbeat in seconds.
CREATE VIEW live_connections AS
SELECT id, opened_at, peer_pid, peer_uid, stale, heartbeats, last_heartbeat_at,
       round((julianday('now') - julianday(coalesce(last_heartbeat_at, opened_at))) * 86400, 1)
           AS seconds_since_heartbeat,
       crawler_uptime_s, crawler_status, messages_in, messages_out, job_requests
FROM connections
WHERE closed_at IS NULL;

-- The periodic alerts' episodes (one row per kind while its condition holds): when it
-- started, when the monitor last looked, and when the event fired (once per episode).
CREATE TABLE alert_episodes (
    kind        TEXT PRIMARY KEY CHECK (kind IN ('crawler_lost', 'crawler_absent')),
    since       TEXT NOT NULL,
    checked_at  TEXT NOT NULL,
    fired_at    TEXT
) WITHOUT ROWID;
