//! `tributary run start|get|list|watch|cancel`. Each command opens one
//! connection and makes every call on it.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use tributary_proto::v1 as pb;
use tributary_proto::v1::run_service_client::RunServiceClient;
use tributary_proto::v1::workflow_service_client::WorkflowServiceClient;

use super::CliError;
use super::client::{ClientOptions, NamespacedChannel};
use super::output::{self, Align, Table, say};
use super::run_view::{self, ContextView};
use super::watch::{self, EventPrinter, run_status_name, run_status_text};
use super::workflow::{Selector, version_selector};

#[derive(Debug, clap::Subcommand)]
pub enum RunCommand {
    /// Start a run of a workflow; print its id.
    Start {
        workflow: String,
        /// The input context: JSON text, or @FILE to read it from a file.
        #[arg(long, default_value = "{}")]
        input: String,
        /// A version hash, or a sequence number (1 = first registered); the
        /// latest when omitted.
        #[arg(long)]
        version: Option<String>,
        /// Starting twice with the same key and request returns the same run.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Print the run id, then follow the run until it ends and print
        /// it; exit 0 only when it succeeded.
        #[arg(long)]
        wait: bool,
        /// With --wait: print all of the final context, however large.
        #[arg(long, requires = "wait", conflicts_with = "no_context")]
        context: bool,
        /// With --wait: print no context.
        #[arg(long, requires = "wait")]
        no_context: bool,
        #[command(flatten)]
        client: ClientOptions,
    },
    /// Show a run: its times, its tasks, and its context (summarized when
    /// larger than 4 KiB or 40 lines).
    Get {
        run_id: String,
        /// Print all of the context, however large.
        #[arg(long, conflicts_with = "no_context")]
        context: bool,
        /// Print no context.
        #[arg(long)]
        no_context: bool,
        /// List a mapped task's instances from this element index on
        /// (paging through a large map).
        #[arg(long, default_value_t = 0)]
        instances_from: u32,
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
    /// Follow a run's events live until it ends; exit 0 only when it
    /// succeeded.
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
    /// Re-run a finished run from where it failed (or from a task).
    Retry(super::retry::RetryArgs),
}

pub async fn run(command: RunCommand) -> Result<ExitCode, CliError> {
    match command {
        RunCommand::Start {
            workflow,
            input,
            version,
            idempotency_key,
            wait,
            context,
            no_context,
            client,
        } => {
            let request = StartRequest {
                workflow,
                input,
                version,
                idempotency_key,
            };
            let view = ContextView::from_flags(context, no_context);
            start(request, wait.then_some(view), &client).await
        }
        RunCommand::Get {
            run_id,
            context,
            no_context,
            instances_from,
            client,
        } => {
            let mut runs = client.run_client().await?;
            let view = ContextView::from_flags(context, no_context);
            // The table lists a few instances; --json all that fit.
            let request = pb::GetRunRequest {
                run_id,
                omit_contexts: view == ContextView::Omit,
                instances_from,
                max_instances: (!client.json).then_some(run_view::SHOWN_INSTANCES as u32),
            };
            let run = get_run(&mut runs, request).await?;
            run_view::print_run(&run, client.json, view)?;
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
        } => watch_run(&run_id, after, &client).await,
        RunCommand::Retry(args) => super::retry::run(args).await,
        RunCommand::Cancel { run_id, client } => {
            let mut runs = client.run_client().await?;
            let response = runs
                .cancel_run(pb::CancelRunRequest {
                    run_id: run_id.clone(),
                })
                .await?
                .into_inner();
            if client.json {
                say!(
                    "{}",
                    json!({"run_id": run_id, "status": run_status_name(response.status)})
                );
            } else {
                say!("run {run_id} {}", run_status_name(response.status));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_input(input: &str) -> Result<String, CliError> {
    match input.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(Path::new(path))
            .map_err(|error| CliError::Input(format!("cannot read {path}: {error}"))),
        None => Ok(input.to_owned()),
    }
}

/// What `run start` asks for.
struct StartRequest {
    workflow: String,
    input: String,
    version: Option<String>,
    idempotency_key: Option<String>,
}

/// Starts the run and prints its id at once; with `wait` (the context view
/// of the final print), follows its events on the same connection until it
/// ends, saying on stderr when a task waits with no executor taking it.
async fn start(
    request: StartRequest,
    wait: Option<ContextView>,
    client: &ClientOptions,
) -> Result<ExitCode, CliError> {
    let input_context_json = read_input(&request.input)?;
    let channel = client.namespaced_channel().await?;
    let workflow_version = match request.version.as_deref().map(version_selector) {
        None => String::new(),
        Some(Selector::Version(hash)) => hash,
        Some(selector @ Selector::Sequence(_)) => {
            // StartRun names versions by hash; a sequence number is resolved
            // the way `workflow get --version N` resolves it.
            WorkflowServiceClient::new(channel.clone())
                .get_workflow(pb::GetWorkflowRequest {
                    name: request.workflow.clone(),
                    selector: Some(selector),
                })
                .await?
                .into_inner()
                .workflow
                .unwrap_or_default()
                .version
        }
    };
    let mut runs = super::client::run_client_on(channel);
    let started = runs
        .start_run(pb::StartRunRequest {
            workflow_name: request.workflow.clone(),
            workflow_version,
            input_context_json,
            idempotency_key: request.idempotency_key.unwrap_or_default(),
        })
        .await?
        .into_inner();
    if client.json {
        say!(
            "{}",
            json!({"run_id": started.run_id, "workflow_version": started.workflow_version, "created": started.created})
        );
    } else {
        say!("{}", started.run_id);
    }
    let Some(view) = wait else {
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!(
        "waiting for run {id} of {workflow} to end (Ctrl-C stops waiting, not the run; \
         its events: tributary run watch {id})",
        id = started.run_id,
        workflow = request.workflow,
    );
    let run_id = started.run_id;
    watch::follow(
        &mut runs,
        &run_id,
        0,
        Some(watch::STALL_HINT_AFTER),
        |_| Ok(()),
        |waiting| {
            eprintln!(
                "still waiting: {} READY for {:?} and no executor has taken {}: is a worker \
                 serving this workflow connected? `tributary executor list` shows the \
                 connected ones; an example serves its workflow with --worker \
                 (examples/README.md)",
                waiting.join(", "),
                watch::STALL_HINT_AFTER,
                if waiting.len() == 1 { "it" } else { "them" },
            );
        },
    )
    .await?;
    let request = pb::GetRunRequest {
        run_id,
        max_instances: (!client.json).then_some(run_view::SHOWN_INSTANCES as u32),
        ..Default::default()
    };
    let run = get_run(&mut runs, request).await?;
    if !client.json {
        say!("");
    }
    run_view::print_run(&run, client.json, view)?;
    Ok(exit_for(run.status))
}

/// 0 for a run that succeeded, 1 otherwise.
fn exit_for(status: i32) -> ExitCode {
    if status == pb::RunStatus::Succeeded as i32 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The run, with the contexts and instances `request` asks for.
async fn get_run(
    runs: &mut RunServiceClient<NamespacedChannel>,
    request: pb::GetRunRequest,
) -> Result<pb::Run, CliError> {
    let run = runs
        .get_run(request)
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
        .filter(|status| *status != pb::RunStatus::Unspecified)
        .ok_or_else(|| {
            CliError::Input(format!(
                "unknown status {:?}; expected pending, running, succeeded, failed or cancelled",
                text.chars().take(40).collect::<String>()
            ))
        })?,
    };
    let mut runs = client.run_client().await?;
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
        let values: Vec<serde_json::Value> =
            listed.iter().map(run_view::run_summary_json).collect();
        say!("{}", serde_json::Value::Array(values));
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        ("RUN", Align::Left),
        ("WORKFLOW", Align::Left),
        ("STATUS", Align::Left),
        ("CREATED", Align::Left),
        ("DURATION", Align::Right),
    ]);
    for run in &listed {
        let mut duration = run_view::run_duration_ms(run)
            .map(output::duration)
            .unwrap_or_default();
        if run.finished_at.is_none() && !duration.is_empty() {
            duration = format!("{duration} so far");
        }
        table.row(vec![
            run.id.clone(),
            run.workflow_name.clone(),
            run_status_text(run),
            run.created_at
                .as_ref()
                .map(|at| output::time(tributary_proto::unix_ms_from_timestamp(at)))
                .unwrap_or_default(),
            duration,
        ]);
    }
    table.emit()?;
    Ok(ExitCode::SUCCESS)
}

/// Prints one line per event (one JSON object per line with `--json`) until
/// the run's final event; exits non-zero unless the run succeeded.
async fn watch_run(run_id: &str, after: u64, client: &ClientOptions) -> Result<ExitCode, CliError> {
    let mut runs = client.run_client().await?;
    let mut printer = EventPrinter::default();
    let as_json = client.json;
    let status = watch::follow(
        &mut runs,
        run_id,
        after,
        None,
        |event| {
            let line = if as_json {
                printer.json(event).to_string()
            } else {
                printer.line(event)
            };
            output::emit(&line)
        },
        |_| {},
    )
    .await?;
    Ok(exit_for(status as i32))
}
