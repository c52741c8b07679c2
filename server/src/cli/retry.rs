//! `tributary run retry RUN_ID [--from TASK] [--request-id ID] [--wait]`:
//! re-run a finished run in place.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use tributary_proto::v1 as pb;

use super::CliError;
use super::client::ClientOptions;

/// How often `--wait` reads the run again.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    run_id: String,
    /// Re-run this task and everything downstream of it, instead of the
    /// failed, skipped and cancelled tasks.
    #[arg(long = "from")]
    from_task: Option<String>,
    /// An id of this retry: repeating the command with it prints the same
    /// answer instead of retrying twice.
    #[arg(long)]
    request_id: Option<String>,
    /// Wait for the run to end again; exit non-zero unless it succeeded.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    client: ClientOptions,
}

pub async fn run(args: RetryArgs) -> Result<ExitCode, CliError> {
    let client = &args.client;
    let mut runs = client.run_client().await?;
    let retried = runs
        .retry_run(pb::RetryRunRequest {
            run_id: args.run_id.clone(),
            from_task: args.from_task.unwrap_or_default(),
            request_id: args.request_id.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if client.json {
        println!(
            "{}",
            json!({
                "run_id": retried.run_id,
                "status": status_name(retried.status()),
                "retry_count": retried.retry_count,
                "retried_task_ids": retried.retried_task_ids,
            })
        );
    } else {
        println!(
            "run {} retried (retry {}), {}: {}",
            retried.run_id,
            retried.retry_count,
            status_name(retried.status()),
            retried.retried_task_ids.join(", ")
        );
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let run = loop {
        let run = runs
            .get_run(pb::GetRunRequest {
                run_id: retried.run_id.clone(),
                omit_contexts: false,
                ..Default::default()
            })
            .await?
            .into_inner()
            .run
            .unwrap_or_default();
        if matches!(
            run.status(),
            pb::RunStatus::Succeeded | pb::RunStatus::Failed | pb::RunStatus::Cancelled
        ) {
            break run;
        }
        tokio::time::sleep(POLL).await;
    };
    if client.json {
        let tasks: serde_json::Map<String, serde_json::Value> = run
            .tasks
            .iter()
            .map(|task| (task.task_id.clone(), json!(task_state_name(task.state()))))
            .collect();
        println!(
            "{}",
            json!({"run_id": run.id, "status": status_name(run.status()), "tasks": tasks})
        );
    } else {
        println!("run {} {}", run.id, status_name(run.status()));
        for task in &run.tasks {
            println!("  {:<24} {}", task.task_id, task_state_name(task.state()));
        }
    }
    Ok(if run.status() == pb::RunStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn status_name(status: pb::RunStatus) -> String {
    status
        .as_str_name()
        .trim_start_matches("RUN_STATUS_")
        .to_ascii_lowercase()
}

fn task_state_name(state: pb::TaskState) -> String {
    state
        .as_str_name()
        .trim_start_matches("TASK_STATE_")
        .to_ascii_lowercase()
}
