-- Tributary schema, SQLite flavour. Times are milliseconds since the Unix
-- epoch; contexts and definitions are JSON text (never reformatted). Every row
-- carries its namespace. The same file name exists under postgres/.

CREATE TABLE workflows (
    namespace       TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    latest_version  TEXT    NOT NULL,
    next_sequence   INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE workflow_versions (
    namespace       TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    definition_json TEXT    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (namespace, name, version),
    UNIQUE (namespace, name, sequence)
);

CREATE TABLE runs (
    id                  TEXT    NOT NULL PRIMARY KEY,
    namespace           TEXT    NOT NULL,
    workflow_name       TEXT    NOT NULL,
    workflow_version    TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    input_context_json  TEXT    NOT NULL,
    final_context_json  TEXT,
    idempotency_key     TEXT,
    request_hash        TEXT    NOT NULL,
    created_at_ms       INTEGER NOT NULL,
    started_at_ms       INTEGER,
    finished_at_ms      INTEGER
);
CREATE UNIQUE INDEX runs_idempotency ON runs (namespace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Runs are listed newest first by id (a UUIDv7, so id order is time order),
-- optionally of one workflow, and paged with `id < before_id`.
CREATE INDEX runs_listing ON runs (namespace, id DESC);
CREATE INDEX runs_listing_by_workflow ON runs (namespace, workflow_name, id DESC);
CREATE INDEX runs_active ON runs (status) WHERE status IN ('pending', 'running');
-- Retention deletes finished runs oldest first; only terminal runs have a
-- finish time, so the index holds nothing for active runs.
CREATE INDEX runs_finished ON runs (finished_at_ms) WHERE finished_at_ms IS NOT NULL;

-- The rows under a run reference it (and their task), so a write for a run
-- or task that does not exist fails its transaction instead of leaving an
-- orphan that GetRun would never show.
CREATE TABLE task_runs (
    run_id             TEXT    NOT NULL,
    namespace          TEXT    NOT NULL,
    task_id            TEXT    NOT NULL,
    position           INTEGER NOT NULL,
    state              TEXT    NOT NULL,
    skip_reason        TEXT,
    attempts_started   INTEGER NOT NULL DEFAULT 0,
    failures           INTEGER NOT NULL DEFAULT 0,
    reassignments      INTEGER NOT NULL DEFAULT 0,
    current_attempt_id TEXT,
    next_attempt_at_ms INTEGER,
    error              TEXT,
    updated_at_ms      INTEGER NOT NULL,
    PRIMARY KEY (run_id, task_id),
    FOREIGN KEY (run_id) REFERENCES runs (id)
);

CREATE TABLE attempts (
    id              TEXT    NOT NULL PRIMARY KEY,
    namespace       TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    task_id         TEXT    NOT NULL,
    number          INTEGER NOT NULL,
    executor_id     TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    error           TEXT,
    assigned_at_ms  INTEGER NOT NULL,
    deadline_at_ms  INTEGER,
    started_at_ms   INTEGER,
    finished_at_ms  INTEGER,
    UNIQUE (run_id, task_id, number),
    FOREIGN KEY (run_id, task_id) REFERENCES task_runs (run_id, task_id)
);
CREATE INDEX attempts_by_state ON attempts (state) WHERE state IN ('assigned', 'running');

-- The delta of the succeeded attempt of a task: at most one per task.
CREATE TABLE context_deltas (
    run_id       TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    task_id      TEXT NOT NULL,
    attempt_id   TEXT NOT NULL,
    set_json     TEXT NOT NULL,
    removed_json TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id),
    FOREIGN KEY (run_id, task_id) REFERENCES task_runs (run_id, task_id),
    FOREIGN KEY (attempt_id) REFERENCES attempts (id)
);
-- Deleting an attempt checks that no delta references it; without this
-- index each check would scan the whole table.
CREATE INDEX context_deltas_by_attempt ON context_deltas (attempt_id);

CREATE TABLE context_conflicts (
    run_id              TEXT NOT NULL,
    namespace           TEXT NOT NULL,
    key                 TEXT NOT NULL,
    winning_task_id     TEXT NOT NULL,
    overridden_task_id  TEXT NOT NULL,
    PRIMARY KEY (run_id, key, winning_task_id, overridden_task_id),
    FOREIGN KEY (run_id) REFERENCES runs (id)
);

-- The event log. `cursor` is taken from event_sequencer inside the writing
-- transaction, so cursors become visible in commit order.
CREATE TABLE events (
    cursor        INTEGER NOT NULL PRIMARY KEY,
    namespace     TEXT    NOT NULL,
    run_id        TEXT    NOT NULL,
    workflow_name TEXT    NOT NULL,
    sequence      INTEGER NOT NULL,
    event_type    TEXT    NOT NULL,
    payload_json  TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (run_id, sequence)
);
-- WatchEvents reads a namespace in cursor order, optionally of some
-- workflows only; WatchRun reads one run by (run_id, sequence) above.
CREATE INDEX events_by_namespace ON events (namespace, cursor);
CREATE INDEX events_by_workflow ON events (namespace, workflow_name, cursor);

CREATE TABLE event_sequencer (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    next_cursor INTEGER NOT NULL
);
INSERT INTO event_sequencer (id, next_cursor) VALUES (1, 1);
