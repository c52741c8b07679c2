//! `tributary run start|get|list|cancel` and `tributary executor list`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use tributary_proto::unix_ms_from_timestamp;
use tributary_proto::v1 as pb;
use tributary_proto::v1::executor_service_client::ExecutorServiceClient;
use tributary_proto::v1::run_service_client::RunServiceClient;

use super::CliError;
use super::client::ClientOptions;

#[derive(Debug, clap::Subcommand)]
pub enum RunCommand {
    /// Start a run of a workflow.
    Start {
        workflow: String,
        /// The input context: JSON text, or @FILE to read it from a file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// A workflow version hash; the latest when omitted.
        #[arg(long)]
        version: Option<String>,
        /// Starting twice with the same key and request returns the same run.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Wait for the run to end; exit non-zero unless it succeeded.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Show a run with its tasks and context.
    Get {
        run_id: String,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// List runs, newest first.
    List {
        #[arg(long)]
        workflow: Option<String>,
        /// pending, running, succeeded, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// How many runs to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Follow a run's events live until it ends.
    Watch {
        run_id: String,
        /// Replay only the events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Cancel a run.
    Cancel {
        run_id: String,
        #[command(flatten)]
        client: ClientOptions,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ExecutorCommand {
    /// List the executors connected to the server.
    List {
        #[command(flatten)]
        client: ClientOptions,
    },
}

pub async fn run(command: RunCommand) -> Result<ExitCode, CliError> {
    match command {
        RunCommand::Start {
            workflow,
            input,
            version,
            idempotency_key,
            wait,
            client,
        } => start(workflow, &input, version, idempotency_key, wait, &client).await,
        RunCommand::Get { run_id, client } => {
            let run = get_run(&client, &run_id).await?;
            print_run(&run, client.json);
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::List {
            workflow,
            status,
            limit,
            client,
        } => list(workflow, status, limit, &client).await,
        RunCommand::Watch {
            run_id,
            after,
            client,
        } => watch(run_id, after, &client).await,
        RunCommand::Cancel { run_id, client } => {
            let mut runs = RunServiceClient::new(client.namespaced_channel().await?);
            let response = runs
                .cancel_run(pb::CancelRunRequest {
                    run_id: run_id.clone(),
                })
                .await?
                .into_inner();
            if client.json {
                println!(
                    "{}",
                    json!({"run_id": run_id, "status": status_name(response.status)})
                );
            } else {
                println!("run {run_id} {}", status_name(response.status));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn executors(command: ExecutorCommand) -> Result<ExitCode, CliError> {
    let ExecutorCommand::List { client } = command;
    let mut executors = ExecutorServiceClient::new(client.namespaced_channel().await?);
    let listed = executors
        .list_executors(pb::ListExecutorsRequest {})
        .await?
        .into_inner()
        .executors;
    if client.json {
        let values: Vec<serde_json::Value> = listed
            .iter()
            .map(|executor| {
                json!({
                    "executor_id": executor.executor_id,
                    "name": executor.name,
                    "instance_id": executor.instance_id,
                    "handlers": executor.handlers,
                    "max_concurrent_attempts": executor.max_concurrent_attempts,
                    "in_flight_attempt_ids": executor.in_flight_attempt_ids,
                    "labels": executor.labels,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(values));
        return Ok(ExitCode::SUCCESS);
    }
    if listed.is_empty() {
        println!("{}", super::waiting::no_executors_line(&client.namespace));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<38} {:<20} {:>9} HANDLERS",
        "EXECUTOR", "NAME", "IN FLIGHT"
    );
    for executor in &listed {
        println!(
            "{:<38} {:<20} {:>4}/{:<4} {}",
            executor.executor_id,
            executor.name,
            executor.in_flight_attempt_ids.len(),
            executor.max_concurrent_attempts,
            executor.handlers.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(input: &str) -> Result<String, CliError> {
    match input.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(Path::new(path))
            .map_err(|error| CliError::Input(format!("cannot read {path}: {error}"))),
        None => Ok(input.to_owned()),
    }
}

async fn start(
    workflow: String,
    input: &str,
    version: Option<String>,
    idempotency_key: Option<String>,
    wait: bool,
    client: &ClientOptions,
) -> Result<ExitCode, CliError> {
    let mut runs = RunServiceClient::new(client.namespaced_channel().await?);
    let started = runs
        .start_run(pb::StartRunRequest {
            workflow_name: workflow,
            workflow_version: version.unwrap_or_default(),
            input_context_json: read_input(input)?,
            idempotency_key: idempotency_key.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if !wait {
        if client.json {
            println!(
                "{}",
                json!({"run_id": started.run_id, "workflow_version": started.workflow_version, "created": started.created})
            );
        } else {
            println!("{}", started.run_id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let run = loop {
        let run = get_run(client, &started.run_id).await?;
        if matches!(
            run.status(),
            pb::RunStatus::Succeeded | pb::RunStatus::Failed | pb::RunStatus::Cancelled
        ) {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    print_run(&run, client.json);
    Ok(if run.status() == pb::RunStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn get_run(client: &ClientOptions, run_id: &str) -> Result<pb::Run, CliError> {
    let mut runs = RunServiceClient::new(client.namespaced_channel().await?);
    let run = runs
        .get_run(pb::GetRunRequest {
            run_id: run_id.to_owned(),
        })
        .await?
        .into_inner()
        .run
        .unwrap_or_default();
    Ok(run)
}

async fn list(
    workflow: Option<String>,
    status: Option<String>,
    limit: u32,
    client: &ClientOptions,
) -> Result<ExitCode, CliError> {
    let status = match status.as_deref() {
        None => pb::RunStatus::Unspecified,
        Some(text) => pb::RunStatus::from_str_name(&format!(
            "RUN_STATUS_{}",
            text.to_ascii_uppercase()
        ))
        .ok_or_else(|| {
            CliError::Input(format!(
                "unknown status {text:?}; expected pending, running, succeeded, failed or cancelled"
            ))
        })?,
    };
    let mut runs = RunServiceClient::new(client.namespaced_channel().await?);
    let listed = runs
        .list_runs(pb::ListRunsRequest {
            workflow_name: workflow.unwrap_or_default(),
            status: status as i32,
            page_size: limit,
            page_token: String::new(),
        })
        .await?
        .into_inner()
        .runs;
    if client.json {
        let values: Vec<serde_json::Value> = listed.iter().map(run_summary_json).collect();
        println!("{}", serde_json::Value::Array(values));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<38} {:<24} {:<10}", "RUN", "WORKFLOW", "STATUS");
    for run in &listed {
        println!(
            "{:<38} {:<24} {:<10}",
            run.id,
            run.workflow_name,
            status_name(run.status)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn status_name(status: i32) -> String {
    pb::RunStatus::try_from(status)
        .map(|status| {
            status
                .as_str_name()
                .trim_start_matches("RUN_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("unknown({status})"))
}

fn run_summary_json(run: &pb::Run) -> serde_json::Value {
    json!({
        "run_id": run.id,
        "workflow_name": run.workflow_name,
        "workflow_version": run.workflow_version,
        "status": status_name(run.status),
        "created_at_ms": run.created_at.as_ref().map(unix_ms_from_timestamp),
        "finished_at_ms": run.finished_at.as_ref().map(unix_ms_from_timestamp),
    })
}

fn print_run(run: &pb::Run, as_json: bool) {
    let context: serde_json::Value =
        serde_json::from_str(&run.context_json).unwrap_or(serde_json::Value::Null);
    if as_json {
        let mut value = run_summary_json(run);
        value["context"] = context;
        value["tasks"] = run
            .tasks
            .iter()
            .map(|task| {
                json!({
                    "task_id": task.task_id,
                    "state": pb::TaskState::try_from(task.state).map(|s| s.as_str_name().trim_start_matches("TASK_STATE_").to_ascii_lowercase()).unwrap_or_default(),
                    "skip_reason": pb::SkipReason::try_from(task.skip_reason).ok().filter(|r| *r != pb::SkipReason::Unspecified).map(|r| r.as_str_name().trim_start_matches("SKIP_REASON_").to_ascii_lowercase()),
                    "attempts": task.attempts.len(),
                    "error": task.error,
                    "waiting": super::waiting::waiting_json(task),
                })
            })
            .collect();
        println!("{value}");
        return;
    }
    println!("run:      {}", run.id);
    println!("workflow: {} ({})", run.workflow_name, run.workflow_version);
    println!("status:   {}", status_name(run.status));
    println!();
    println!("{:<28} {:<16} {:>8}  ERROR", "TASK", "STATE", "ATTEMPTS");
    for task in &run.tasks {
        let mut state = pb::TaskState::try_from(task.state)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("TASK_STATE_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if let Ok(reason) = pb::SkipReason::try_from(task.skip_reason)
            && reason != pb::SkipReason::Unspecified
        {
            state = format!(
                "{state} ({})",
                reason
                    .as_str_name()
                    .trim_start_matches("SKIP_REASON_")
                    .to_ascii_lowercase()
            );
        }
        println!(
            "{:<28} {:<16} {:>8}  {}",
            task.task_id,
            state,
            task.attempts.len(),
            super::waiting::task_note(task)
        );
    }
    println!();
    println!(
        "context: {}",
        serde_json::to_string_pretty(&context).unwrap_or_default()
    );
}

/// Prints one line per event (one JSON object per line with `--json`) until
/// the run's final event; exits non-zero unless the run succeeded.
async fn watch(run_id: String, after: u64, client: &ClientOptions) -> Result<ExitCode, CliError> {
    let mut runs = RunServiceClient::new(client.namespaced_channel().await?);
    let mut stream = runs
        .watch_run(pb::WatchRunRequest {
            run_id,
            after_sequence: after,
        })
        .await?
        .into_inner();
    let mut final_status = None;
    while let Some(response) = stream.message().await? {
        let Some(event) = response.event else {
            continue;
        };
        let event_type = pb::RunEventType::try_from(event.r#type)
            .map(|t| {
                t.as_str_name()
                    .trim_start_matches("RUN_EVENT_TYPE_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if event.r#type == pb::RunEventType::RunFinished as i32 {
            final_status = Some(event.run_status);
        }
        let time_ms = event.time.as_ref().map(unix_ms_from_timestamp);
        if client.json {
            println!(
                "{}",
                json!({
                    "sequence": event.sequence,
                    "cursor": event.cursor,
                    "type": event_type,
                    "time_ms": time_ms,
                    "task_id": event.task_id,
                    "attempt_id": event.attempt_id,
                    "attempt_number": event.attempt_number,
                    "executor_id": event.executor_id,
                    "error": event.error,
                    "run_status": (event.run_status != 0).then(|| status_name(event.run_status)),
                })
            );
        } else {
            let mut line = format!("{:>5}  {:<22}", event.sequence, event_type);
            if !event.task_id.is_empty() {
                line.push_str(&format!(" {}", event.task_id));
            }
            if event.attempt_number > 0 {
                line.push_str(&format!(" (attempt {})", event.attempt_number));
            }
            if !event.error.is_empty() {
                line.push_str(&format!(": {}", event.error));
            }
            if event.run_status != 0 {
                line.push_str(&format!(" {}", status_name(event.run_status)));
            }
            println!("{line}");
        }
    }
    Ok(match final_status {
        Some(status) if status == pb::RunStatus::Succeeded as i32 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
