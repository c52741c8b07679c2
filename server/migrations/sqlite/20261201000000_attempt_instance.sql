-- The executor instance an attempt was assigned to: only its results count
-- for the attempt, and only it may reclaim the attempt after a restart.
-- NULL for attempts written before the column existed.
ALTER TABLE attempts ADD COLUMN instance_id TEXT;
