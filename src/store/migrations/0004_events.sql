-- The notification outbox (issue 15): events worth telling an operator about, written
-- in the same transaction as the change that caused them.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('job_failed', 'credential_failed', 'type_paused',
                  'crawler_lost', 'crawler_absent', 'queue_drained', 'database_error', 'test')),
    subject   TEXT NOT NULL,
    severity  TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    message   TEXT NOT NULL,
    details   TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);
