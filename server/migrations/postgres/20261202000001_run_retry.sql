-- RetryRun re-runs a finished run in place: how many times it did, and the
-- client's id of the latest retry, so that a repeated call is answered
-- again instead of retrying twice.
ALTER TABLE runs ADD COLUMN retry_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN retry_request_id TEXT;
