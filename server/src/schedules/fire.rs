//! Starting the run of one fire: the same path as `StartRun` (idempotency
//! key checked, workflow version resolved, the coordinator starts the run),
//! with the key derived from the schedule and the fire time.

use chrono::{SecondsFormat, TimeZone, Utc};

use crate::dispatch::start::{RunRequest, start_or_find_run};
use crate::dispatch::{CoordinatorHandle, DispatchError};
use crate::engine::schedule_plan::fire_idempotency_key;
use crate::store::{Store, StoreError, StoredSchedule};

/// Why a fire started no run.
#[derive(Debug, thiserror::Error)]
pub(super) enum FireError {
    /// Worth trying again later: the database or the coordinator is not
    /// answering; the fire is not recorded, so it is tried again.
    #[error("{0}")]
    Transient(String),
    /// The fire cannot start a run (the workflow is gone, a quota is full,
    /// the key is held by another request); recorded as the schedule's
    /// last error, and the fire is let go.
    #[error("{0}")]
    Refused(String),
}

impl From<StoreError> for FireError {
    fn from(error: StoreError) -> FireError {
        if error.is_transient() {
            FireError::Transient(error.to_string())
        } else {
            FireError::Refused(error.to_string())
        }
    }
}

impl From<DispatchError> for FireError {
    fn from(error: DispatchError) -> FireError {
        match error {
            DispatchError::Stopped => FireError::Transient(error.to_string()),
            DispatchError::Store(error) => error.into(),
            other => FireError::Refused(other.to_string()),
        }
    }
}

/// A fire time as its idempotency key writes it: RFC 3339 in UTC.
pub(super) fn fire_time_text(fire_ms: i64) -> String {
    Utc.timestamp_millis_opt(fire_ms)
        .single()
        .map(|time| time.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| fire_ms.to_string())
}

/// Starts (or finds, when it was started before a crash) the run of the
/// fire at `fire_ms`; returns its id.
pub(super) async fn start_fire_run(
    store: &dyn Store,
    coordinator: &CoordinatorHandle,
    schedule: &StoredSchedule,
    fire_ms: i64,
) -> Result<String, FireError> {
    let started = start_or_find_run(
        store,
        coordinator,
        RunRequest {
            namespace: &schedule.namespace,
            workflow_name: &schedule.workflow_name,
            workflow_version: &schedule.workflow_version,
            input_context_json: schedule.input_context_json.clone(),
            idempotency_key: Some(fire_idempotency_key(
                &schedule.schedule_id,
                &fire_time_text(fire_ms),
            )),
        },
    )
    .await?;
    Ok(started.run_id)
}
