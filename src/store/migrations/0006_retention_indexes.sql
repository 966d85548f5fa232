-- Version 5 -> 6: retention reaches every growing table through an index (issue 13
-- added retention of connections, discoveries and token refreshes; issue 14 wants no
-- periodic statement to scan a growing table).
CREATE INDEX connections_closed ON connections (closed_at) WHERE closed_at IS NOT NULL;
CREATE INDEX discoveries_received ON discoveries (received_at);
CREATE INDEX token_refreshes_at ON token_refreshes (at);
-- Deleting a connection or an ended job sets these references to NULL: without an
-- index each delete would scan jobs.
CREATE INDEX jobs_connection ON jobs (connection_id) WHERE connection_id IS NOT NULL;
CREATE INDEX jobs_parent ON jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;
