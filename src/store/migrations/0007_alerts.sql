-- Version 6 -> 7 (issue 15): the episodes of the periodic alerts (crawler_lost,
-- crawler_absent), so each fires once per episode; deliveries reachable by event, so
-- retention's delete of old events does not scan notify_deliveries for the cascade.
CREATE TABLE alert_episodes (
    kind        TEXT PRIMARY KEY CHECK (kind IN ('crawler_lost', 'crawler_absent')),
    since       TEXT NOT NULL,
    checked_at  TEXT NOT NULL,
    fired_at    TEXT
) WITHOUT ROWID;
CREATE INDEX notify_deliveries_event ON notify_deliveries (event_id);
