-- The notification outbox (issue 15): events worth telling an operator about, written
-- in the same transaction as the change that caused them.
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
