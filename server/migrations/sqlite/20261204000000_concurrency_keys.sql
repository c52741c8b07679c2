-- Concurrency keys: the key a run of a workflow with a concurrency policy was
-- given from its input (NULL without a policy). A QUEUED run waits for a
-- slot of its key; queued runs are served first in, first out, which is id
-- order (UUIDv7), so the queue needs no column of its own.
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
-- The queue of a key, in order, for positions and recovery.
CREATE INDEX runs_queued ON runs (namespace, workflow_name, concurrency_key, id)
    WHERE status = 'queued';
-- The active runs of a key, for recovery.
CREATE INDEX runs_active_keys ON runs (namespace, workflow_name, concurrency_key, id)
    WHERE concurrency_key IS NOT NULL AND status IN ('pending', 'running');
