//! Re-running a finished run in place: [`Client::retry_run`].

use tributary_proto::v1 as pb;

use crate::client::Client;
use crate::error::Error;
use crate::runs::RunStatus;

/// Options of [`Client::retry_run`].
///
/// ```
/// let options = tributary::RetryOptions {
///     from_task: Some("combine".into()),
///     request_id: Some("retry-1".into()),
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryOptions {
    /// Re-run this task and everything downstream of it, instead of the
    /// failed, skipped and cancelled tasks.
    pub from_task: Option<String>,
    /// An id of this retry: repeating the call with the id of the run's
    /// latest retry returns that retry's answer instead of an error, so a
    /// call whose answer was lost can be repeated safely.
    pub request_id: Option<String>,
}

/// What [`Client::retry_run`] reset.
///
/// ```no_run
/// # async fn f(client: tributary::Client, run_id: &str) -> Result<(), tributary::Error> {
/// let retried = client.retry_run(run_id, Default::default()).await?;
/// println!("re-running {:?}", retried.retried_task_ids);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetriedRun {
    /// The run's id.
    pub run_id: String,
    /// The run's status now (RUNNING, or terminal again when no reset task
    /// could run).
    pub status: RunStatus,
    /// How many times the run has been retried, this retry included.
    pub retry_count: u32,
    /// The tasks reset, in canonical order.
    pub retried_task_ids: Vec<String>,
}

impl Client {
    /// Re-runs a finished run in place: its failed, skipped and cancelled
    /// tasks (or `options.from_task` and its descendants) get new attempts,
    /// succeeded tasks keep their outputs and do not run again. The run is
    /// RUNNING again; [`Client::wait`] waits for its new end. A run still
    /// going is `FailedPrecondition`.
    ///
    /// ```no_run
    /// # async fn f(client: tributary::Client, run_id: &str) -> Result<(), tributary::Error> {
    /// client.retry_run(run_id, Default::default()).await?;
    /// let run = client.wait(run_id).await?;
    /// println!("{:?} after {} retries", run.status, run.retry_count);
    /// # Ok(()) }
    /// ```
    pub async fn retry_run(
        &self,
        run_id: &str,
        options: RetryOptions,
    ) -> Result<RetriedRun, Error> {
        let response = self
            .runs()
            .retry_run(pb::RetryRunRequest {
                run_id: run_id.to_owned(),
                from_task: options.from_task.unwrap_or_default(),
                request_id: options.request_id.unwrap_or_default(),
            })
            .await?
            .into_inner();
        Ok(RetriedRun {
            status: RunStatus::from_proto(response.status())?,
            run_id: response.run_id,
            retry_count: response.retry_count,
            retried_task_ids: response.retried_task_ids,
        })
    }
}
