//! Which tasks this process serves, and the worker mode (`--worker`, alias
//! `--worker-only`): serve them
//! against a server until told to stop, start no run. With these a run can
//! be split across processes, e.g. a worker in another language serving a
//! few tasks and an example process serving the rest.

use tracing::info;
use tributary::{Client, ShutdownReport, Task, Workflow};

use crate::runner::{self, AttemptLog, ExampleError, ServerArgs, WORKER_SHUTDOWN_LIMIT};

/// How many unknown ids an error lists before it only counts the rest.
const LISTED_IDS: usize = 10;

/// Which of a workflow's tasks this process's worker serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Serve {
    /// Every task.
    #[default]
    All,
    /// Only the tasks with these ids.
    Only(Vec<String>),
    /// None: no worker in this process.
    Nothing,
}

impl Serve {
    /// The selection the flags make: `--no-worker` serves nothing,
    /// `--handlers a,b` only those tasks, neither every task.
    pub fn from_flags(no_worker: bool, handlers: Option<Vec<String>>) -> Serve {
        match (no_worker, handlers) {
            (true, _) => Serve::Nothing,
            (false, Some(task_ids)) => Serve::Only(task_ids),
            (false, None) => Serve::All,
        }
    }

    /// The tasks of `workflow` to serve, in the workflow's order; `None`
    /// for no worker. Ids the workflow does not have are an error naming
    /// them.
    pub fn select<'a>(
        &self,
        workflow: &'a Workflow,
    ) -> Result<Option<Vec<&'a Task>>, ExampleError> {
        let task_ids = match self {
            Serve::All => return Ok(Some(workflow.tasks().iter().collect())),
            Serve::Nothing => return Ok(None),
            Serve::Only(task_ids) => task_ids,
        };
        let mut unknown: Vec<&str> = Vec::new();
        for id in task_ids {
            if workflow.tasks().iter().all(|task| task.id() != id)
                && !unknown.contains(&id.as_str())
            {
                unknown.push(id);
            }
        }
        if !unknown.is_empty() {
            let known: Vec<&str> = workflow.tasks().iter().map(Task::id).collect();
            return Err(ExampleError::UnknownTasks {
                workflow: workflow.name().to_owned(),
                unknown: listing(&unknown),
                known: known.join(", "),
            });
        }
        Ok(Some(
            workflow
                .tasks()
                .iter()
                .filter(|task| task_ids.iter().any(|id| id == task.id()))
                .collect(),
        ))
    }
}

/// Up to [`LISTED_IDS`] ids, quoted, then how many more there are: the ids
/// come from the command line and an error should stay short.
fn listing(ids: &[&str]) -> String {
    let mut text = ids
        .iter()
        .take(LISTED_IDS)
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > LISTED_IDS {
        text.push_str(&format!(" and {} more", ids.len() - LISTED_IDS));
    }
    text
}

/// `--worker`: serves the tasks `serve` selects of `workflow` against the
/// server `--server` names until SIGTERM or SIGINT (see
/// [`serve_until_signal`]); without `--server` there is nothing to serve.
pub async fn serve_workflow(
    server: &ServerArgs,
    workflow: &Workflow,
    capacity: u32,
    serve: &Serve,
) -> Result<ShutdownReport, ExampleError> {
    let url = server
        .server
        .as_deref()
        .ok_or(ExampleError::WorkerOnlyWithoutServer)?;
    serve_until_signal(url, workflow, capacity, serve).await
}

/// Registers `workflow` at `url` and serves the tasks `serve` selects of
/// it, starting no run, until SIGTERM or SIGINT; then stops taking work, lets running
/// attempts finish and their results be acknowledged, and returns how that
/// went. Once connected it says so on stderr, with the worker's executor id.
pub async fn serve_until_signal(
    url: &str,
    workflow: &Workflow,
    capacity: u32,
    serve: &Serve,
) -> Result<ShutdownReport, ExampleError> {
    let tasks = serve.select(workflow)?.unwrap_or_default();
    // Listening before the worker connects, so that a signal sent as soon
    // as the worker is announced is never the default (killing) one.
    let mut stop = StopSignal::listen().map_err(ExampleError::Signal)?;
    // Registered here too, so that runs can be started from the CLI by
    // name without a definition file; the same definition registers as the
    // same version.
    let client = Client::connect(url)
        .await
        .map_err(|source| ExampleError::Connect {
            url: url.to_owned(),
            source,
        })?;
    client
        .register_workflow(workflow)
        .await
        .map_err(|source| ExampleError::Register {
            workflow: workflow.name().to_owned(),
            source,
        })?;
    let log = AttemptLog::default();
    let worker = runner::connected_worker(url, workflow, &tasks, capacity, &log).await?;
    let executor_id = worker.status().borrow().executor_id.clone();
    let task_ids: Vec<&str> = tasks.iter().map(|task| task.id()).collect();
    eprintln!(
        "Worker {executor_id} connected to {url}, serving {count} tasks of {name}: {list}; \
         stop it with SIGTERM or SIGINT",
        count = task_ids.len(),
        name = workflow.name(),
        list = task_ids.join(", "),
    );
    let signal = stop.recv().await;
    info!(signal, "stopping: no more work, draining what runs");
    let report = worker.shutdown(WORKER_SHUTDOWN_LIMIT).await;
    eprintln!(
        "Worker {executor_id} stopped on {signal} after {attempts} attempts: {outcome}",
        attempts = log.len(),
        outcome = if report.drained {
            "drained".to_owned()
        } else {
            format!(
                "not drained, {} attempts cancelled",
                report.cancelled_attempts
            )
        },
    );
    Ok(report)
}

/// SIGTERM or SIGINT (Ctrl-C), whichever comes first.
struct StopSignal {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignal {
    #[cfg(unix)]
    fn listen() -> std::io::Result<StopSignal> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignal {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn listen() -> std::io::Result<StopSignal> {
        Ok(StopSignal {})
    }

    /// Waits for the signal and names it.
    #[cfg(unix)]
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel_processing::workflow;

    #[test]
    fn only_the_named_tasks_are_served_in_the_workflows_order() {
        let workflow = workflow();
        let serve = Serve::Only(vec![
            "process_partition_3".into(),
            "process_partition_1".into(),
        ]);
        let ids: Vec<&str> = serve
            .select(&workflow)
            .expect("known ids")
            .expect("a worker")
            .iter()
            .map(|task| task.id())
            .collect();
        assert_eq!(ids, ["process_partition_1", "process_partition_3"]);
        assert_eq!(
            Serve::All.select(&workflow).expect("all").map(|t| t.len()),
            Some(9)
        );
        assert!(Serve::Nothing.select(&workflow).expect("none").is_none());
    }

    #[test]
    fn unknown_ids_are_named() {
        let workflow = workflow();
        let serve = Serve::Only(vec!["cleanup".into(), "nope".into(), String::new()]);
        let error = serve.select(&workflow).expect_err("unknown ids");
        let message = error.to_string();
        assert!(
            message.starts_with("unknown task ids in --handlers: \"nope\", \"\"; the tasks of parallel_processing are generate_data, "),
            "{message}"
        );
        let many: Vec<String> = (0..12).map(|n| format!("t{n}")).collect();
        let message = Serve::Only(many)
            .select(&workflow)
            .expect_err("unknown ids")
            .to_string();
        assert!(message.contains("\"t9\" and 2 more;"), "{message}");
    }
}
