-- Version 7 -> 8 (issue 14): job counts kept by triggers, so status, metrics and the
-- per-credential rollup read a few rows at any queue size.
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

INSERT INTO job_counts (credential_id, entity_type, status, jobs, items)
SELECT credential_id, entity_type, status, count(*),
       CAST(min(total(CASE WHEN status = 'finished' AND json_valid(final_counts)
                                AND json_type(final_counts) = 'object'
                           THEN coalesce((SELECT CAST(min(max(total(value), 0), 1e15) AS INTEGER)
                                          FROM json_each(final_counts)
                                          WHERE type IN ('integer', 'real')), 0)
                           ELSE 0 END), 1e18) AS INTEGER)
FROM jobs GROUP BY 1, 2, 3;

DROP VIEW credential_rollup;
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
