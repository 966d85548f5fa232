-- errors.category gains 'internal': a panic contained to one operation or connection.
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt.
DROP VIEW recent_errors;
CREATE TABLE errors_new (
    id              INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    category        TEXT NOT NULL CHECK (category IN ('protocol', 'validation', 'job',
                        'storage', 'connection', 'security', 'config', 'token', 'internal')),
    severity        TEXT NOT NULL CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    message         TEXT NOT NULL,
    job_id          TEXT,
    connection_id   INTEGER,
    error_type      TEXT,
    is_recoverable  INTEGER CHECK (is_recoverable IN (0, 1)),
    stack_trace     TEXT,
    context         TEXT,
    partial_counts  TEXT,
    resume_state    TEXT
);
INSERT INTO errors_new SELECT id, at, category, severity, message, job_id, connection_id,
    error_type, is_recoverable, stack_trace, context, partial_counts, resume_state FROM errors;
DROP TABLE errors;
ALTER TABLE errors_new RENAME TO errors;
CREATE INDEX errors_at ON errors (at);
CREATE VIEW recent_errors AS
SELECT id, at, category, severity, job_id, connection_id, message
FROM errors
WHERE at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')
ORDER BY id DESC;
