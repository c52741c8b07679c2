-- Dynamic fan-out. An instance of a mapped task is a task_runs row of its
-- own, keyed `<task id>[<index>]` (no task id contains `[`), so its attempts
-- and its delta hang off it with the existing foreign keys. `map_index` is
-- set on instance rows; `map_size` on a mapped task's row once it was
-- expanded into that many instances.
ALTER TABLE task_runs ADD COLUMN map_index INTEGER;
ALTER TABLE task_runs ADD COLUMN map_size INTEGER;

-- A mapped task's gathered output: the delta no attempt wrote (an empty
-- array has no instance at all), so it cannot be a context_deltas row,
-- whose attempt_id references an attempt.
CREATE TABLE map_outputs (
    run_id    TEXT NOT NULL,
    namespace TEXT NOT NULL,
    task_id   TEXT NOT NULL,
    set_json  TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id),
    FOREIGN KEY (run_id, task_id) REFERENCES task_runs (run_id, task_id)
);
