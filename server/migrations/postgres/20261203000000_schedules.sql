-- Schedules: a cron expression in a time zone that starts runs of a
-- workflow. `cursor_ms` is the latest fire time the scheduler has dealt
-- with (started, skipped, queued or let go), so no time is dealt with twice;
-- the run a fire starts carries the idempotency key
-- `schedule:<schedule_id>:<fire time>`, so a fire whose progress was not
-- recorded (a crash in between) finds its run again instead of starting
-- another. `workflow_version` is empty for "the latest at each fire".
CREATE TABLE schedules (
    namespace TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    workflow_version TEXT NOT NULL,
    cron TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    input_context_json TEXT NOT NULL,
    overlap_policy TEXT NOT NULL,
    catch_up_policy TEXT NOT NULL,
    max_catch_up BIGINT NOT NULL,
    paused BOOLEAN NOT NULL,
    created_at_ms BIGINT NOT NULL,
    cursor_ms BIGINT NOT NULL,
    queued_fire_ms BIGINT,
    last_fire_ms BIGINT,
    last_run_id TEXT,
    last_error TEXT,
    PRIMARY KEY (namespace, schedule_id)
);
