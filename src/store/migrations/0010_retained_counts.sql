-- Version 9 -> 10 (issue 14): job events and errors counted by triggers, so `metrics`
-- reads a few rows at any history length (a GROUP BY over 3M job events took 2 s).
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

INSERT INTO job_event_counts (event, rows) SELECT event, count(*) FROM job_events GROUP BY 1;
INSERT INTO error_counts (category, severity, rows)
SELECT category, severity, count(*) FROM errors GROUP BY 1, 2;
